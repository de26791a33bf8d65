package main

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpodsim"
)

// The embedded throughput benchmark's history: 2 orgs x 700 calls a minute
// x 80 minutes = 112,000 calls waiting in the API when `callstream run`
// starts.
const (
	embBenchOrgs      = "acme,globex"
	embBenchPerMinute = 700
	embBenchHistory   = 80 * time.Minute
	embBenchTimeout   = 3 * time.Minute
)

// TestBenchEmbeddedThroughput measures the embedded pipeline end to end
// (issue 13.1): the built `callstream run`, the simulator holding a history
// of 112k calls and nothing after it, and the SQLite call_logs table, timed
// from the process start to the moment call_logs holds every ground-truth
// call. It runs three ways, each from an empty state directory:
//
//   - storage only, state on disk: the durable bus (fsynced SQLite log) and
//     the SQLite sink, the figure the goal (20k events/s) is about;
//   - storage only, state on tmpfs (/dev/shm): the same code with the disk
//     taken out, so the difference is what durability on this disk costs;
//   - every default plug-in (storage, alerting, webhooks without endpoints,
//     lake), state on disk: what `make run` does, with four consumer groups
//     reading the log.
//
// Figures only; nothing is asserted about speed.
//
//	CALLSTREAM_BENCH=1 go test -run TestBenchEmbeddedThroughput -v ./cmd/callstream
func TestBenchEmbeddedThroughput(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1 to run the embedded throughput benchmark")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "callstream")
	if err := e2eGoBuild(bin); err != nil {
		t.Fatal(err)
	}
	shm, err := os.MkdirTemp("/dev/shm", "callstream-bench-")
	if err != nil {
		t.Fatalf("tmpfs: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })

	runs := []struct {
		name, stateRoot, plugins string
	}{
		{"storage only, state on disk", dir, "storage"},
		{"storage only, state on tmpfs", shm, "storage"},
		{"all default plug-ins, state on disk", dir, ""},
	}
	figures := make([]float64, len(runs))
	for i, r := range runs {
		t0 := time.Now().UTC().Truncate(time.Minute)
		sc := unpodsim.DefaultConfig()
		sc.Orgs, sc.Token, sc.DailyShape = strings.Split(embBenchOrgs, ","), "bench-token", false
		sc.CallsPerMinute, sc.Start = embBenchPerMinute, t0.Add(-embBenchHistory)
		sc.LateRecords, sc.Updates, sc.PageShifts, sc.InvalidRecords = 0, 0, 0, 0
		sc.Faults, sc.Incidents = unpodsim.Faults{}, nil
		for _, org := range sc.Orgs { // nothing after t0: the history is the whole job
			sc.Incidents = append(sc.Incidents, unpodsim.Incident{Kind: unpodsim.Outage, Org: org, Start: t0, Duration: 24 * time.Hour, Intensity: 1})
		}
		sim, url := e2eStartSim(t, sc)
		want := 0
		for _, org := range sc.Orgs {
			want += len(sim.GroundTruthWindow(org, time.Time{}, t0, t0.Add(time.Minute)))
		}
		state := filepath.Join(r.stateRoot, fmt.Sprintf("state-%d", i))
		cfgFile := filepath.Join(dir, fmt.Sprintf("bench-%d.yaml", i))
		yaml := fmt.Sprintf(`unpod: {base_url: %q, token: bench-token, rate_limit: -1}
producer: {org_handles: [%s], poll_interval: 1s, settle_lag: 1s, lookback: 2h}
log: {format: text, level: warn}
`, url, embBenchOrgs)
		if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		env := append(os.Environ(), "CALLSTREAM_STATE_DIR="+state, "CALLSTREAM_HTTP_LISTEN="+freeAddr(t), "CALLSTREAM_CONSUMERS="+r.plugins)
		p := newE2EProc(t, dir, fmt.Sprintf("run-%d", i), bin, env, "run", "--config", cfgFile)
		start := time.Now()
		p.Start()
		db := filepath.Join(state, "callstream.db")
		n := 0
		done := e2eWaitFor(embBenchTimeout, 100*time.Millisecond, func() bool {
			n = embBenchCount(db)
			return n >= want
		})
		took := time.Since(start)
		if err := p.Stop(30 * time.Second); err != nil {
			t.Error(err)
		}
		if !done {
			t.Fatalf("%s: call_logs holds %d of %d calls after %s\n%s", r.name, n, want, embBenchTimeout, p.Tail(30))
		}
		figures[i] = float64(want) / took.Seconds()
		fmt.Printf("BENCH embedded end to end (%s): %d calls from the API into SQLite call_logs in %s = %.0f events/s\n",
			r.name, want, took.Round(10*time.Millisecond), figures[i])
	}
	fmt.Printf("BENCH embedded durability cost: disk %.0f events/s vs tmpfs %.0f events/s (%.0f%%); all plug-ins %.0f events/s; load %s\n",
		figures[0], figures[1], 100*figures[0]/figures[1], figures[2], testenv.LoadAvg())
}

// embBenchCount counts call_logs rows; 0 while the file or table is not
// there yet.
func embBenchCount(path string) int {
	if _, err := os.Stat(path); err != nil {
		return 0
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return 0
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM call_logs`).Scan(&n); err != nil {
		return 0
	}
	return n
}
