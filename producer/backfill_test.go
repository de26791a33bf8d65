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
	if last.Published != p2.Stats().Published || last.Duplicates != int64(firstHalf) {
		t.Errorf("last progress %+v: want %d published and %d duplicates", last, p2.Stats().Published, firstHalf)
	}

	// The last ten minutes, whose events the bus stamped minutes after
	// from (not hours, as above): a new producer's backfill reads them back
	// from clockSkew before from, and publishes none again.
	recent := now.Add(-10 * time.Minute)
	p3, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := p3.Backfill(ctx, "acme", recent, now, nil); err != nil {
		t.Fatal(err)
	}
	n := p3.Stats().Published
	if n == 0 {
		t.Fatal("nothing published for the last ten minutes")
	}
	// The same producer again, twice: every report counts that backfill
	// alone, not the producer's earlier ones.
	for pass := 2; pass <= 3; pass++ {
		progress = nil
		if err := p3.Backfill(ctx, "acme", recent, now, func(pr BackfillProgress) { progress = append(progress, pr) }); err != nil {
			t.Fatal(err)
		}
		for _, pr := range progress {
			if pr.Published != 0 || pr.Duplicates > n {
				t.Fatalf("backfill %d by the same producer reported %d published and %d duplicates, want 0 and at most %d", pass, pr.Published, pr.Duplicates, n)
			}
		}
		if last := progress[len(progress)-1]; last.Duplicates != n {
			t.Errorf("backfill %d by the same producer ended at %d duplicates, want %d", pass, last.Duplicates, n)
		}
	}
	p4, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := p4.Backfill(ctx, "acme", recent, now, nil); err != nil {
		t.Fatal(err)
	}
	if st := p4.Stats(); st.Published != 0 || st.Duplicates != n {
		t.Errorf("a backfill of recent calls already on the bus published %d and dropped %d, want 0 and %d", st.Published, st.Duplicates, n)
	}
}
