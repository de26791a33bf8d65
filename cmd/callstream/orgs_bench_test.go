package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpodsim"
)

// TestBenchOrgsPerProducer measures how many organizations one
// `callstream produce` polls at the default cadence before the producer,
// rather than the API, is the limit. The client's own rate limit is off, so
// nothing but the producer holds polls back; for each org count the
// simulator's request log gives every org's longest wait between two
// requests, and /proc gives the producer's CPU time. An org count is kept
// up with while 99% of the orgs wait at most idle_poll_interval plus a
// poll's slack. The smallest count is the baseline: the cadence of an
// unloaded producer.
//
// The figure to compare it with is the API's: at the default
// unpod.rate_limit (5 requests/s for the whole process) one producer has
// room for 5 / (requests per org per second) orgs.
func TestBenchOrgsPerProducer(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1 to run the orgs-per-producer benchmark")
	}
	brokers := testenv.Kafka(t)
	const (
		warmup      = 30 * time.Second // restore, backfill of the lookback, cadence settles
		window      = 40 * time.Second
		idle        = 10 * time.Second // the default idle_poll_interval
		slack       = 3 * time.Second
		defaultRate = 5.0 // unpod.rate_limit's default
	)
	dir := t.TempDir()
	bin := filepath.Join(dir, "callstream")
	if err := e2eGoBuild(bin); err != nil {
		t.Fatal(err)
	}
	type step struct {
		orgs                 int
		reqPerS, cpuShare    float64
		cpuPerReq            time.Duration
		gapP50, gapP99       time.Duration
		starved              int
		keptUp               bool
		load                 string
		simCPUShare          float64
		perOrgPerS, orgsRate float64
	}
	var steps []step
	for _, n := range []int{25, 500, 2000, 5000} {
		t.Run(fmt.Sprintf("orgs=%d", n), func(t *testing.T) {
			orgs := make([]string, n)
			for i := range orgs {
				orgs[i] = fmt.Sprintf("o%04d", i)
			}
			sc := unpodsim.DefaultConfig()
			sc.Orgs, sc.Token, sc.DailyShape, sc.CallsPerMinute, sc.Incidents = orgs, "op-token", false, 1, nil
			sc.Start, sc.RecordRequests = time.Now().Add(-10*time.Minute), true
			sim, url := e2eStartSim(t, sc)
			// Everything but the client's rate limit and the lookback (kept
			// short so that the warm-up is not a backfill) is at its default.
			yaml := fmt.Sprintf(`unpod: {base_url: %q, token: op-token, rate_limit: -1}
producer: {lookback: 10m}
log: {format: text, level: warn}
`, url)
			cfgFile := filepath.Join(dir, fmt.Sprintf("orgs-%d.yaml", n))
			if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			p := newProducerProc(t, dir, fmt.Sprintf("op-%d", n), bin, brokers, testenv.Prefix(t), cfgFile)
			p.Start()
			time.Sleep(warmup)
			from, cpu0, sim0 := time.Now(), p.CPU(), testenv.CPUTime()
			time.Sleep(window)
			to, cpu1, sim1 := time.Now(), p.CPU(), testenv.CPUTime()
			if u := p.Unexpected(); len(u) > 0 {
				t.Fatalf("producer exited: %v\n%s", u, p.Tail(30))
			}
			p.Kill()

			last := map[string]time.Time{}
			gaps := map[string]time.Duration{}
			requests := 0
			for _, r := range sim.Requests() {
				if r.At.Before(from) || r.At.After(to) {
					continue
				}
				requests++
				if l, ok := last[r.Org]; ok {
					gaps[r.Org] = max(gaps[r.Org], r.At.Sub(l))
				} else {
					// The wait before the window's first request counts: an
					// org that is polled late is as late as one polled rarely.
					gaps[r.Org] = r.At.Sub(from)
				}
				last[r.Org] = r.At
			}
			var longest []time.Duration
			s := step{orgs: n, load: testenv.LoadAvg()}
			for _, org := range orgs {
				l, ok := last[org]
				if !ok {
					s.starved++
					longest = append(longest, window)
					continue
				}
				longest = append(longest, max(gaps[org], to.Sub(l)))
			}
			slices.Sort(longest)
			ps := e2ePercentiles(longest, 50, 99)
			s.gapP50, s.gapP99 = ps[0], ps[1]
			span := to.Sub(from).Seconds()
			s.reqPerS = float64(requests) / span
			s.perOrgPerS = s.reqPerS / float64(n)
			s.cpuShare = (cpu1 - cpu0).Seconds() / span
			s.simCPUShare = (sim1 - sim0).Seconds() / span
			if requests > 0 {
				s.cpuPerReq = (cpu1 - cpu0) / time.Duration(requests)
			}
			s.orgsRate = defaultRate / s.perOrgPerS
			s.keptUp = s.starved == 0 && s.gapP99 <= idle+slack
			t.Logf("%d orgs: %.1f requests/s (%.3f per org), longest wait p50 %s p99 %s, %d orgs not polled, producer CPU %.0f%% of a core (%s per request), simulator and test %.0f%%, load %s",
				n, s.reqPerS, s.perOrgPerS, s.gapP50.Round(10*time.Millisecond), s.gapP99.Round(10*time.Millisecond), s.starved,
				100*s.cpuShare, s.cpuPerReq.Round(time.Microsecond), 100*s.simCPUShare, s.load)
			steps = append(steps, s)
		})
	}
	if len(steps) == 0 {
		t.Fatal("no step ran")
	}
	base := steps[0]
	kept := 0
	for _, s := range steps {
		fmt.Printf("BENCH orgs per producer, %d orgs: %.1f requests/s, longest wait between polls of an org p50 %s p99 %s (kept up: %t), producer CPU %.0f%% of a core, %s per request; baseline %d orgs: p99 %s; load %s\n",
			s.orgs, s.reqPerS, s.gapP50.Round(10*time.Millisecond), s.gapP99.Round(10*time.Millisecond), s.keptUp,
			100*s.cpuShare, s.cpuPerReq.Round(time.Microsecond), base.orgs, base.gapP99.Round(10*time.Millisecond), s.load)
		if s.keptUp {
			kept = s.orgs
		}
	}
	// One core's worth of polling, at the CPU per org the largest count
	// kept up with cost; the API figure is the default rate limit over the
	// requests an org needs.
	i := slices.IndexFunc(steps, func(s step) bool { return s.orgs == kept })
	if i < 0 {
		fmt.Printf("BENCH orgs per producer: no org count kept the cadence (fewest tried: %d)\n", base.orgs)
		return
	}
	s := steps[i]
	perCore := float64(s.orgs) / s.cpuShare
	fmt.Printf("BENCH orgs per producer: kept cadence up to %d orgs (most tried: %d); one core of producer CPU would poll %.0f such orgs; the default unpod.rate_limit of %.0f/s allows %.0f (%.3f requests/s per org), so the API limit binds first, by %.0fx\n",
		kept, steps[len(steps)-1].orgs, perCore, defaultRate, s.orgsRate, s.perOrgPerS, perCore/s.orgsRate)
}
