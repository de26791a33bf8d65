package producer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

// TestRecentRereadCatchesLateRecordsAtTheNextPoll: at the defaults, a
// record that appears in the API after its creation_time (every call here
// is late, updated or shifted), and a record's changed version, are
// published by the first poll after the API shows them, and a quiet org's
// poll costs one request: the recent re-read serves rung 0 and the young
// rungs.
func TestRecentRereadCatchesLateRecordsAtTheNextPoll(t *testing.T) {
	t.Parallel()
	t0 := time.Now().UTC().Truncate(time.Minute)
	clock := &fakeClock{now: t0}
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Incidents, sc.DailyShape, sc.Clock = []string{"acme"}, "tok", nil, false, clock.Now
	sc.Start, sc.CallsPerMinute = t0.Add(-10*time.Minute), 10
	sc.LateRecords, sc.Updates, sc.PageShifts = 0.4, 0.4, 0.2
	reg := prometheus.NewRegistry()
	sc.Registerer = reg
	sim, url := startSim(t, sc)

	var mu sync.Mutex
	published := map[string]time.Time{} // raw -> poll that published it
	cfg := DefaultConfig()
	cfg.Orgs, cfg.Lookback = []string{"acme"}, 10*time.Minute
	deps := Deps{Source: newClient(t, url, "tok"), Publisher: nopPublisher{}, Topic: "calls", DLQTopic: "dlq",
		Store: NewFileStore(t.TempDir() + "/s.json"), Now: clock.Now,
		OnEvent: func(e *schemas.CallEvent) {
			mu.Lock()
			published[string(e.Raw)] = clock.Now()
			mu.Unlock()
		}}
	p, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.pollOrg(ctx, "acme"); err != nil { // the lookback
		t.Fatal(err)
	}
	from, before := clock.Now(), simRequests(t, reg)
	polls := 0
	for end := from.Add(20 * time.Minute); clock.Now().Before(end); polls++ {
		clock.Add(cfg.PollInterval)
		if err := p.pollOrg(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
	}
	requests := simRequests(t, reg) - before

	late := 0
	for _, a := range sim.Appearances("acme", sc.Start, clock.Now(), clock.Now()) {
		if !a.VisibleAt.After(from) {
			continue
		}
		at, ok := published[string(a.Raw)]
		if !ok {
			t.Errorf("version %d of a call created %s, visible at %s, was never published", a.Version, a.Created, a.VisibleAt)
			continue
		}
		if a.VisibleAt.After(a.Created) {
			late++
		}
		if wait := at.Sub(a.VisibleAt); wait > cfg.PollInterval {
			t.Errorf("version %d of a call created %s, visible at %s, published at %s: %s later, want at the next poll (%s)",
				a.Version, a.Created.Format(time.TimeOnly), a.VisibleAt.Format(time.TimeOnly), at.Format(time.TimeOnly), wait, cfg.PollInterval)
		}
	}
	if late < 50 {
		t.Fatalf("only %d late or changed versions became visible: the test shows nothing", late)
	}
	// The rungs of 30 minutes and 2 hours read their own windows now and
	// then; everything else is the one request of each poll.
	if max := float64(polls) * 1.05; requests > max {
		t.Errorf("%0.f requests for %d polls, want about one a poll (at most %.0f)", requests, polls, max)
	}
	t.Logf("%d polls, %.0f requests, %d late or changed versions, each published by the next poll", polls, requests, late)
}
