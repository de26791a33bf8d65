package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/unpodsim"
)

// TestBenchAlertLatency measures alerting end to end at the defaults of
// `callstream run`: a scripted failed-call burst on a simulator of 60
// calls a minute (late records, updates and page shifts on), the default
// failed-call-burst rule (6 failed, 30% of at least 10 calls in 2 minutes,
// for 20 s) and an Alertmanager listener that notes when the firing
// notification arrives. The reference is ideal: the first moment the
// calls the API shows satisfy the rule's conditions for its whole for
// period, computed from the simulator's own ground truth at 1 s steps, so
// what remains is the pipeline's share (freshness, the alerting grace and
// the evaluation step). The previous producer defaults (poll 30 s, settle
// lag 30 s, grace 1 min since the poll is not under 20 s) run beside it.
// Figures only.
//
//	CALLSTREAM_BENCH=1 go test -run TestBenchAlertLatency -v ./cmd/callstream
func TestBenchAlertLatency(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1 to run the alert latency benchmark")
	}
	runs := []struct{ name, producer string }{
		{"new defaults", ""},
		{"previous defaults", "producer: {poll_interval: 30s, idle_poll_interval: 30s, settle_lag: 30s, recent_rescan: 0s, org_request_budget: 0, rescan_ages: [0s, 5m, 30m, 2h]}\n"},
	}
	var wg sync.WaitGroup
	out := make([]string, len(runs))
	for i, r := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = alertLatency(t, r.name, r.producer) }()
	}
	wg.Wait()
	for _, s := range out {
		fmt.Println(s)
	}
}

func alertLatency(t *testing.T, name, producerYAML string) string {
	burstAt := time.Now().Add(150 * time.Second) // after the catch-up and the alerting startup hold
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.DailyShape, sc.CallsPerMinute = []string{"acme"}, "bench-token", false, 60
	sc.Incidents = []unpodsim.Incident{{Kind: unpodsim.FailedBurst, Org: "acme", Start: burstAt, Duration: 3 * time.Minute, Intensity: 0.6}}
	sim, url := e2eStartSim(t, sc)

	var mu sync.Mutex
	var received time.Time
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var alerts []struct {
			Labels map[string]string `json:"labels"`
			EndsAt time.Time         `json:"endsAt"`
		}
		_ = json.Unmarshal(body, &alerts)
		now := time.Now()
		mu.Lock()
		for _, a := range alerts {
			if a.Labels["alertname"] == "failed-call-burst" && received.IsZero() && (a.EndsAt.IsZero() || a.EndsAt.After(now)) {
				received = now
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer am.Close()

	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "callstream.yaml")
	yaml := `log: {format: text, level: warn}
state_dir: ` + strconv.Quote(filepath.Join(dir, "state")) + `
http: {listen: ""}
` + producerYAML + `alerting:
  notifiers:
    alertmanager: {url: "` + am.URL + `"}
`
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"UNPOD_API_URL": url, "UNPOD_API_TOKEN": sc.Token, "UNPOD_ORG_HANDLES": "acme"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := &env{stdout: io.Discard, stderr: io.Discard, lookupEnv: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
	done := make(chan int, 1)
	go func() { done <- runMain(ctx, e, []string{"run", "--config", cfgFile}) }()
	deadline := burstAt.Add(4 * time.Minute)
	for time.Now().Before(deadline) {
		mu.Lock()
		got := received
		mu.Unlock()
		if !got.IsZero() {
			break
		}
		select {
		case code := <-done:
			t.Errorf("%s: callstream run exited %d", name, code)
			return name + ": callstream run exited"
		case <-time.After(200 * time.Millisecond):
		}
	}
	cancel()
	<-done
	mu.Lock()
	got := received
	mu.Unlock()
	ideal := idealFire(sim, "acme", burstAt, got)
	if got.IsZero() {
		t.Errorf("%s: no failed-call-burst notification within 4 minutes of the burst", name)
		return name + ": no notification"
	}
	return fmt.Sprintf("BENCH alert end to end, %s: failed-call burst starts -> Alertmanager notification received %s; ideal firing from the API's ground truth (conditions held for the rule's 20 s) -> received %s (burst start -> ideal %s)",
		name, got.Sub(burstAt).Round(100*time.Millisecond), got.Sub(ideal).Round(100*time.Millisecond), ideal.Sub(burstAt).Round(100*time.Millisecond))
}

// idealFire returns when failed-call-burst would fire on the calls the API
// shows, evaluated every second from the burst start up to until: the
// first time its conditions have held for 20 s.
func idealFire(sim *unpodsim.Server, org string, from, until time.Time) time.Time {
	var since time.Time
	for at := from; !at.After(until); at = at.Add(time.Second) {
		failed, total := 0, 0
		for _, r := range sim.GroundTruthWindow(org, at.Add(-2*time.Minute), at, at) {
			total++
			if r.CallStatus == "failed" {
				failed++
			}
		}
		holds := failed >= 6 && total >= 10 && float64(failed) >= 0.3*float64(total)
		switch {
		case !holds:
			since = time.Time{}
		case since.IsZero():
			since = at
		}
		if !since.IsZero() && at.Sub(since) >= 20*time.Second {
			return at
		}
	}
	return until
}
