package producer

import (
	"context"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/unpodsim"
)

// TestBackfillThroughTheGate backfills half a range, then the whole range
// with a fresh producer (a new process): the second one learns the first
// half from the topic and publishes only the second half. Progress starts
// from the API's count.
func TestBackfillThroughTheGate(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC().Truncate(time.Minute)
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Incidents = []string{"acme", "globex"}, "tok", nil
	sc.Start, sc.CallsPerMinute = now.Add(-3*time.Hour), 10
	sc.Clock = func() time.Time { return now }
	sim, url := startSim(t, sc)
	from, mid, to := now.Add(-3*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour)

	deps, kcfg := kafkaDeps(t, newClient(t, url, "tok"), nil)
	cfg := DefaultConfig()
	cfg.MaxWindow, cfg.PageSize = 20*time.Minute, 100
	p1, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p1.Backfill(ctx, "acme", from, mid, nil); err != nil {
		t.Fatal(err)
	}
	p2, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	var progress []BackfillProgress
	if err := p2.Backfill(ctx, "acme", from, to, func(pr BackfillProgress) { progress = append(progress, pr) }); err != nil {
		t.Fatal(err)
	}
	firstHalf := len(sim.GroundTruthWindow("acme", from, mid, now))
	whole := sim.GroundTruthWindow("acme", from, to, now)
	if got := p1.Stats().Published; got != int64(firstHalf) {
		t.Errorf("first backfill published %d, want %d", got, firstHalf)
	}
	if st := p2.Stats(); st.Published != int64(len(whole)-firstHalf) || st.Duplicates != int64(firstHalf) {
		t.Errorf("second backfill published %d and dropped %d; want %d and %d", st.Published, st.Duplicates, len(whole)-firstHalf, firstHalf)
	}
	latest := checkStream(t, readTopic(t, kcfg, deps.Topic))
	checkTruth(t, "acme", whole, latest, from, to)
	if len(progress) == 0 {
		t.Fatal("no progress reported")
	}
	last := progress[len(progress)-1]
	if last.Total != len(whole) || last.Read < last.Total || last.Windows != 6 || last.Window != 6 {
		t.Errorf("last progress %+v: want total %d read in 6 windows", last, len(whole))
	}
}
