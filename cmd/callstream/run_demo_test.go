package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callstream/callstream/producer"
)

// demoSpeed is how much faster than the wall clock the demo test runs:
// two simulated minutes take 24 seconds.
const demoSpeed = 5

// TestDemoAlertAtAnyHour is the first run of a new user (issue 17):
// `callstream run` without an API token, on the built-in simulator, with
// the clock at the daily shape's trough (02:00 UTC) and at its peak (14:00
// UTC). In both the scripted missed-call alert fires within two minutes of
// the start, with no WARN logged before it, and resolves a few minutes
// later. The clock is the producer's simulated clock (sim_clock), which
// the demo hands to the simulator and to alerting too.
func TestDemoAlertAtAnyHour(t *testing.T) {
	for _, hour := range []int{2, 14} {
		t.Run(fmt.Sprintf("%02d:00 UTC", hour), func(t *testing.T) {
			target := time.Date(2026, 3, 2, hour, 0, 0, 0, time.UTC)
			// A clock that reads target now: origin + speed*(now-origin).
			now := time.Now()
			origin := now.Add(now.Sub(target) / (demoSpeed - 1))
			simClock := fmt.Sprintf("%dx@%s", demoSpeed, origin.UTC().Format(time.RFC3339Nano))
			clock, err := producer.ParseSimClock(simClock)
			if err != nil {
				t.Fatal(err)
			}
			vars := map[string]string{
				"CALLSTREAM_SIM_CLOCK":   simClock,
				"CALLSTREAM_STATE_DIR":   t.TempDir(),
				"CALLSTREAM_HTTP_LISTEN": "127.0.0.1:0",
				"CALLSTREAM_LOG_FORMAT":  "json",
			}
			var stdout, stderr lockedBuffer
			e := &env{stdout: &stdout, stderr: &stderr, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
			ctx, cancel := context.WithCancel(context.Background())
			began := clock.Now()
			done := make(chan int, 1)
			go func() { done <- runMain(ctx, e, []string{"run"}) }()
			defer func() {
				cancel()
				if code := <-done; code != 0 {
					t.Errorf("callstream run exited %d:\n%s", code, stderr.String())
				}
			}()
			if d := began.Sub(target); d < 0 || d > time.Minute {
				t.Fatalf("the simulated clock reads %s, want %s", began, target)
			}

			// wait returns the simulated time since the start at which
			// stdout first holds line, or fails after limit.
			wait := func(line string, limit time.Duration) time.Duration {
				t.Helper()
				for {
					if strings.Contains(stdout.String(), line) {
						return clock.Now().Sub(began)
					}
					if clock.Now().Sub(began) > limit {
						t.Fatalf("no %q within %s of simulated time; stdout:\n%s\nstderr:\n%s", line, limit, stdout.String(), stderr.String())
					}
					select {
					case code := <-done:
						done <- code
						t.Fatalf("callstream run exited %d:\n%s", code, stderr.String())
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
			fired := wait("ALERT firing missed-call-spike map[org:acme]", 2*time.Minute)
			logsBefore := stderr.String()
			resolved := wait("ALERT resolved missed-call-spike map[org:acme]", 8*time.Minute)
			t.Logf("fired %s and resolved %s after the start (simulated time)", fired.Round(time.Second), resolved.Round(time.Second))
			for _, l := range strings.Split(strings.TrimSpace(logsBefore), "\n") {
				var rec struct {
					Level string `json:"level"`
				}
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					t.Fatalf("log line is not JSON: %q", l)
				}
				if rec.Level == "WARN" || rec.Level == "ERROR" {
					t.Errorf("logged before the alert fired: %s", l)
				}
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and many readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
