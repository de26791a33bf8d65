package producer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

// previousDefaults are the settings before issue 18: a fixed 30 s poll,
// a 30 s settle lag and the ladder 0s, 5m, 30m, 2h, no recent re-read.
func previousDefaults() Config {
	c := DefaultConfig()
	c.PollInterval, c.IdlePollInterval, c.OrgRequestBudget = 30*time.Second, 30*time.Second, 0
	c.SettleLag, c.RecentRescan = 30*time.Second, 0
	c.RescanAges = []time.Duration{0, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour}
	return c
}

// freshnessRun is one producer polling one simulated org on a fast clock.
type freshnessRun struct {
	name     string
	cfg      Config
	perMin   float64
	messy    bool // late records, updates and page shifts at the simulator's default shares
	speed    float64
	duration time.Duration // on the simulated clock, after the first hour's catch-up
}

// freshnessResult is what a run measured, in simulated time.
type freshnessResult struct {
	onTime, late      []time.Duration // visible in the API -> acknowledged on the topic
	missing, versions int             // versions visible early enough that were never published
	catchUpRequests   float64         // the first poll: the lookback hour
	requestsPerHour   float64         // after the catch-up
}

// TestBenchFreshness prints, for the new defaults and the previous ones in
// the same run, p50/p99 freshness (a record version visible in the API,
// by the simulator's own record of when it showed it, to the broker's
// acknowledgement) and the API requests per org per hour counted by the
// simulator: for an org of 30 calls a minute with late records, updates
// and page shifts on, a quiet org (1 call a minute), a busy one (1,000 a
// minute) and the catch-up of the first hour. Each run is one org on a
// simulated clock (speed x wall time) shared with the simulator, so the
// producer's own processing time counts speed times over in the figures;
// a version visible 20 minutes before the end and not published by then
// is counted (the previous ladder reads a slice next at 30 minutes).
// About 3 minutes. Figures only.
func TestBenchFreshness(t *testing.T) {
	benchEnabled(t)
	prev, cur := previousDefaults(), DefaultConfig()
	scenarios := [][2]freshnessRun{
		{{name: "30/min messy, previous", cfg: prev, perMin: 30, messy: true, speed: 20, duration: 30 * time.Minute},
			{name: "30/min messy, new", cfg: cur, perMin: 30, messy: true, speed: 20, duration: 30 * time.Minute}},
		{{name: "quiet 1/min, previous", cfg: prev, perMin: 1, speed: 60, duration: 40 * time.Minute},
			{name: "quiet 1/min, new", cfg: cur, perMin: 1, speed: 60, duration: 40 * time.Minute}},
		{{name: "busy 1000/min, previous", cfg: prev, perMin: 1000, speed: 4, duration: 4 * time.Minute},
			{name: "busy 1000/min, new", cfg: cur, perMin: 1000, speed: 4, duration: 4 * time.Minute}},
	}
	for _, pair := range scenarios {
		var wg sync.WaitGroup
		res := make([]freshnessResult, 2)
		for i, r := range pair {
			wg.Add(1)
			go func() { defer wg.Done(); res[i] = runFreshness(t, r) }()
		}
		wg.Wait()
		for i, r := range pair {
			printFreshness(r, res[i])
		}
	}
}

func printFreshness(r freshnessRun, f freshnessResult) {
	pct := func(ds []time.Duration, q float64) string {
		if len(ds) == 0 {
			return "-"
		}
		slices.Sort(ds)
		return ds[min(len(ds)-1, int(q*float64(len(ds))))].Round(100 * time.Millisecond).String()
	}
	all := append(append([]time.Duration(nil), f.onTime...), f.late...)
	fmt.Printf("BENCH freshness %-24s poll=%s idle=%s settle=%s recent=%s ladder=%v | visible->topic all n=%d p50=%s p99=%s | on time n=%d p50=%s p99=%s | late/changed n=%d p50=%s p99=%s | not on the topic 20 min after visible: %d of %d | API requests/org/hour %.0f, catch-up of the first hour %.0f requests\n",
		r.name, r.cfg.PollInterval, max(r.cfg.IdlePollInterval, r.cfg.PollInterval), r.cfg.SettleLag, r.cfg.RecentRescan, r.cfg.RescanAges,
		len(all), pct(all, .5), pct(all, .99), len(f.onTime), pct(f.onTime, .5), pct(f.onTime, .99),
		len(f.late), pct(f.late, .5), pct(f.late, .99), f.missing, f.versions, f.requestsPerHour, f.catchUpRequests)
}

func runFreshness(t *testing.T, r freshnessRun) freshnessResult {
	origin := time.Now().UTC()
	clock := NewSimClock(r.speed, origin)
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Clock, sc.Incidents, sc.DailyShape = []string{"acme"}, "tok", clock.Now, nil, false
	sc.CallsPerMinute, sc.History = r.perMin, 2*time.Hour
	if !r.messy {
		sc.LateRecords, sc.Updates, sc.PageShifts = 0, 0, 0
	}
	reg := prometheus.NewRegistry()
	sc.Registerer = reg
	sim, url := startSim(t, sc)
	requests := func() float64 { return simRequests(t, reg) }

	var mu sync.Mutex
	acked := map[string]time.Time{} // raw bytes -> acknowledged, on the simulated clock
	deps, _ := kafkaDeps(t, newClient(t, url, "tok"), nil)
	deps.OnEvent = func(e *schemas.CallEvent) {
		at := clock.Now()
		mu.Lock()
		if _, ok := acked[string(e.Raw)]; !ok {
			acked[string(e.Raw)] = at
		}
		mu.Unlock()
	}
	cfg := r.cfg
	cfg.Orgs, cfg.SimClock = []string{"acme"}, clock.String()
	p, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	// The first hour (the lookback) is read by the first poll; measuring
	// starts once it is done.
	for p.Stats().Published == 0 || p.checkpoint("acme").Rungs[0].Frontier.Before(clock.Now().Add(-cfg.SettleLag-2*cfg.PollInterval)) {
		time.Sleep(10 * time.Millisecond)
	}
	start, startReq := clock.Now(), requests()
	time.Sleep(clock.Wall(r.duration))
	end, endReq := clock.Now(), requests()
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	res := freshnessResult{catchUpRequests: startReq, requestsPerHour: (endReq - startReq) / end.Sub(start).Hours()}
	horizon := end.Add(-20 * time.Minute)
	mu.Lock()
	defer mu.Unlock()
	for _, a := range sim.Appearances("acme", start.Add(-time.Hour), end, end) {
		if a.VisibleAt.Before(start) || a.VisibleAt.After(end) {
			continue
		}
		at, ok := acked[string(a.Raw)]
		if !ok {
			if a.VisibleAt.Before(horizon) {
				res.versions++
				res.missing++
			}
			continue
		}
		if a.VisibleAt.Before(horizon) {
			res.versions++
		}
		d := at.Sub(a.VisibleAt)
		if a.Version == 1 && a.VisibleAt.Equal(a.Created) {
			res.onTime = append(res.onTime, d)
		} else {
			res.late = append(res.late, d)
		}
	}
	return res
}

// simRequests sums the simulator's request counter
// (callstream_unpodsim_requests_total) over its labels.
func simRequests(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "callstream_unpodsim_requests_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
