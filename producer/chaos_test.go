package producer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

// TestChaosKillRestart is evidence 1: `callstream produce` runs as a real
// process against the simulator (late records, updates, page shifts, 500s
// and 429s) and the real broker, is killed with SIGKILL at random moments
// of its work six times and restarted, then runs until its top rung has passed a known
// cut. The whole topic must then hold every call of the ground truth
// created before the cut, in its final content, each (call_key, revision)
// exactly once and revisions in order.
func TestChaosKillRestart(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	bin := filepath.Join(t.TempDir(), "callstream")
	build := exec.Command("go", "build", "-o", bin, "github.com/callstream/callstream/cmd/callstream")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build callstream: %v\n%s", err, out)
	}

	const speed = 300 // one wall second is 300 simulated seconds
	origin := time.Now().UTC()
	clock := NewSimClock(speed, origin)
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Incidents, sc.DailyShape = []string{"acme", "globex"}, "chaos-token", nil, false
	sc.Start, sc.CallsPerMinute = origin.Add(-30*time.Minute), 40
	sc.LateRecords, sc.Updates, sc.PageShifts = 0.2, 0.2, 0.1
	sc.Faults = unpodsim.Faults{Error500: 0.05, Throttle429: 0.03, RetryAfter: time.Second}
	sc.Clock = clock.Now
	sim, url := startSim(t, sc)

	prefix := testenv.Prefix(t)
	ages := []time.Duration{0, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, 80 * time.Minute}
	var agesS []string
	for _, a := range ages {
		agesS = append(agesS, a.String())
	}
	env := append(os.Environ(),
		"UNPOD_API_URL="+url, "UNPOD_API_TOKEN=chaos-token", "UNPOD_ORG_HANDLES=acme,globex",
		"KAFKA_BROKERS="+strings.Join(brokers, ","), "CALLSTREAM_TOPIC_PREFIX="+prefix,
		"CALLSTREAM_HTTP_LISTEN=", "CALLSTREAM_SIM_CLOCK="+clock.String(),
		"CALLSTREAM_POLL_INTERVAL=30s", "CALLSTREAM_SETTLE_LAG=30s", "CALLSTREAM_PRODUCER_SESSION_TIMEOUT=6s",
		// The simulator's history starts 30 minutes back; the first run
		// reaches it even if it waits 12 s (an hour at 300x) for the group.
		"CALLSTREAM_LOOKBACK=90m",
		"CALLSTREAM_RESCAN_AGES="+strings.Join(agesS, ","), "CALLSTREAM_LOG_LEVEL=info",
	)
	logDir := t.TempDir()
	start := func(run int) (*exec.Cmd, string) {
		path := filepath.Join(logDir, fmt.Sprintf("run-%d.log", run))
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "produce")
		cmd.Env, cmd.Stdout, cmd.Stderr = env, f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); f.Close() })
		return cmd, path
	}
	dump := func(path string) {
		data, _ := os.ReadFile(path)
		var lines []string // the injected faults' retries left out
		for _, l := range strings.Split(string(data), "\n") {
			if !strings.Contains(l, "unpod request failed, retrying") {
				lines = append(lines, l)
			}
		}
		t.Logf("log %s (last lines):\n%s", filepath.Base(path), strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}

	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = brokers
	kv, err := kafkabus.NewKV(context.Background(), kcfg, schemas.TopicName(prefix, schemas.ProducerStateTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	store := NewKVStore(kv)
	calls := schemas.TopicName(prefix, schemas.CallsTopic)
	// The first run is a first deployment: it starts at the lookback and
	// lives until it has saved both organizations' checkpoints and
	// published (the lookback is where a first deployment starts, not
	// where a crashed one resumes). Every later run owns nothing until the
	// group has given it the organizations, which after a SIGKILL waits
	// for the dead member's session to expire (6 s here): each random life
	// starts then, so that every kill hits a producer at work (restoring,
	// reading, publishing, saving) rather than one still waiting to join.
	rng := rand.New(rand.NewPCG(uint64(origin.UnixNano()), 7))
	const kills = 6
	for run := range kills {
		cmd, path := start(run)
		waited := waitForLog(t, path, "organizations assigned", 60*time.Second)
		if run == 0 {
			waitUntil(t, 60*time.Second, "the first run saved both organizations and published", func() bool {
				st, err := store.Load(context.Background())
				if err != nil || len(st.Orgs) < len(sc.Orgs) {
					return false
				}
				end, err := kafkabus.EndOffsets(context.Background(), kcfg, calls)
				n := int64(0)
				for _, o := range end {
					n += o
				}
				return err == nil && n > 0
			})
		}
		life := time.Duration(100+rng.IntN(2900)) * time.Millisecond
		time.Sleep(life)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			dump(path)
			t.Fatalf("run %d ended before its SIGKILL %s after its assignment: %v", run, life, err)
		}
		cmd.Wait()
		t.Logf("run %d assigned after %s, killed %s into its work", run, waited.Round(time.Millisecond), life)
	}
	cut := clock.Now()
	// Let the last run carry its top rung past the cut (about settle lag +
	// top age + its step: some 30 s of wall time), watching the state topic
	// rather than the clock so that a loaded machine only makes it slower.
	cmd, path := start(kills)
	deadline := time.Now().Add(120 * time.Second)
	for {
		time.Sleep(time.Second)
		st, err := store.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		passed := len(st.Orgs) == len(sc.Orgs)
		for _, cp := range st.Orgs {
			passed = passed && !cp.Low().Before(cut)
		}
		if passed {
			break
		}
		if time.Now().After(deadline) {
			dump(path)
			t.Fatalf("the top rung did not pass the cut %s within 120s", cut)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			dump(path)
			t.Fatalf("final run after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		dump(path)
		t.Fatal("final run did not stop within 20s of SIGTERM")
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "producer stopped, state saved") {
		dump(path)
		t.Error("SIGTERM did not end with a saved state")
	}

	events := readTopic(t, kcfg, calls)
	latest := checkStream(t, events)
	total := 0
	for _, org := range sc.Orgs {
		truth := sim.GroundTruthWindow(org, sim.Start(), cut, clock.Now())
		total += len(truth)
		checkTruth(t, org, truth, latest, sim.Start(), cut)
	}
	t.Logf("%d kills; %d events on the topic; %d calls created before the cut checked against the ground truth", kills, len(events), total)
	if total < 1000 {
		t.Errorf("only %d calls checked; the test is too small to mean much", total)
	}
	if t.Failed() {
		dump(path)
	}
}

// waitForLog waits until the log at path holds want and returns how long
// that took; it fails the test after timeout.
func waitForLog(t *testing.T, path, want string, timeout time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	waitUntil(t, timeout, fmt.Sprintf("%q in %s", want, filepath.Base(path)), func() bool {
		data, _ := os.ReadFile(path)
		return strings.Contains(string(data), want)
	})
	return time.Since(begin)
}

// waitUntil polls ok until it holds; it fails the test, naming what, after
// timeout. Every 100 ms: ok may read the whole state topic.
func waitUntil(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
