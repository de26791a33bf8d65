package alerting

import (
	"context"
	"testing"
	"time"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

// manualClock is a wall clock a test moves by hand.
type manualClock struct{ now time.Time }

func (c *manualClock) Now() time.Time { return c.now }

// TestSilentAPIFiresAbsence is the outage no ratio or count rule can see:
// the simulator's only org has a 15-minute outage, so the API returns no
// records at all and no call moves the watermark. The plug-in, fed the way
// the producer reads the API (in batches, one per poll) and ticked as its
// Run loop does, fires the absence alert within its configured time, on
// the wall clock, and resolves it when calls return.
func TestSilentAPIFiresAbsence(t *testing.T) {
	start := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)
	outage, back := start.Add(15*time.Minute), start.Add(30*time.Minute)
	simCfg := unpodsim.DefaultConfig()
	simCfg.Orgs, simCfg.DailyShape, simCfg.CallsPerMinute = []string{"acme"}, false, 20
	simCfg.Clock = func() time.Time { return start }
	simCfg.Incidents = []unpodsim.Incident{{Kind: unpodsim.Outage, Org: "acme", Start: outage, Duration: back.Sub(outage), Intensity: 1}}
	sim, err := unpodsim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}

	clock := &manualClock{now: start}
	cfg := testConfig("")
	cfg.StartupHold = DefaultConfig().StartupHold // the wall clock moves here
	cfg.Clock = clock.Now
	pub := &memPublisher{}
	p, err := New(cfg, consumers.Deps{Publisher: pub, Topics: consumers.NewTopics("test.")})
	if err != nil {
		t.Fatal(err)
	}
	// published records the wall time each alert event was published at.
	var published []time.Time
	const poll, settle, tick = 30 * time.Second, 30 * time.Second, 5 * time.Second
	rd := newSimReader(sim, start.Add(-time.Hour))
	ctx := context.Background()
	for ; clock.now.Before(back.Add(10 * time.Minute)); clock.now = clock.now.Add(tick) {
		if clock.now.Sub(start)%poll == 0 {
			evs := rd.poll(clock.now, settle)
			batch := make([]consumers.Delivery, len(evs))
			for i := range evs {
				batch[i] = consumers.Delivery{Event: evs[i]}
			}
			if err := p.HandleBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		p.tick(ctx)
		for len(published) < len(pub.msgs) {
			published = append(published, clock.now)
		}
	}

	rule := cfg.Rules[2]
	if rule.Kind != KindAbsence {
		t.Fatalf("rule 2 is %s, want the absence rule", rule.Name)
	}
	var fired, resolved *schemas.AlertEvent
	var firedAt, resolvedAt time.Time
	alerts := pub.alerts(t)
	for i := range alerts {
		a := &alerts[i]
		if a.Rule != rule.Name {
			continue
		}
		switch {
		case a.State == schemas.AlertFiring && fired == nil:
			fired, firedAt = a, published[i]
		case a.State == schemas.AlertResolved && resolved == nil:
			resolved, resolvedAt = a, published[i]
		default:
			t.Fatalf("unexpected %s %s", a.State, a.Rule)
		}
	}
	if fired == nil || resolved == nil || resolved.AlertID != fired.AlertID {
		t.Fatalf("absence alerts %+v, want one firing and its resolution", alerts)
	}
	step := cfg.EvaluationInterval
	// Event time: the window is empty of calls from the outage's start.
	if from, to := outage.Add(rule.Window-step), outage.Add(rule.Window+step); fired.StartsAt.Before(from) || fired.StartsAt.After(to) {
		t.Errorf("absence went pending at %s, want about %s (the window after the last call)", fired.StartsAt, outage.Add(rule.Window))
	}
	// Wall time: with no record at all, event time moves on with the wall
	// clock once every source has been idle for idle_timeout; so the alert
	// comes at most the producer's settle lag and poll interval, the grace
	// period and idle_timeout after the window and for.
	limit := outage.Add(settle + poll + cfg.Grace + cfg.IdleTimeout + rule.Window + rule.For + 2*step)
	if firedAt.After(limit) {
		t.Errorf("absence fired at %s of wall time, want by %s (outage at %s)", firedAt, limit, outage)
	}
	// It resolves keep_firing_for after calls are back, as soon as the
	// producer delivers them.
	if want := back.Add(rule.KeepFiringFor); resolved.EndsAt.Before(want) || resolved.EndsAt.After(want.Add(2*step)) {
		t.Errorf("absence resolved at %s of event time, want %s", resolved.EndsAt, want)
	}
	if limit := back.Add(settle + poll + cfg.Grace + rule.KeepFiringFor + 2*step); resolvedAt.After(limit) {
		t.Errorf("absence resolved at %s of wall time, want by %s", resolvedAt, limit)
	}
	t.Logf("outage %s-%s: absence fired at %s (wall %s), resolved at %s (wall %s)", outage.Format("15:04:05"), back.Format("15:04:05"),
		fired.StartsAt.Format("15:04:05"), firedAt.Format("15:04:05"), resolved.EndsAt.Format("15:04:05"), resolvedAt.Format("15:04:05"))
}

// every is calls of org at one per gap, over [from, to).
func every(org string, from, to, gap time.Duration, n *int) []schemas.CallEvent {
	var out []schemas.CallEvent
	for at := from; at < to; at += gap {
		*n++
		out = append(out, call(*n, org, at, schemas.StatusCompleted))
	}
	return out
}

// TestDropIsHeldAgainstItsBaseline: an org's calls fall from one a second
// to one every 10 s for over two hours. The drop alert fires, and stays
// firing for as long as the rate stays down: it is held against the
// baseline it went pending with, not against one the drop itself lowers
// (that would resolve it within the hour while calls are still missing).
// It resolves once calls are back.
func TestDropIsHeldAgainstItsBaseline(t *testing.T) {
	n := 0
	stream := every("o", 0, 70*time.Minute, time.Second, &n)
	stream = append(stream, every("o", 70*time.Minute, 200*time.Minute, 10*time.Second, &n)...)
	stream = append(stream, every("o", 200*time.Minute, 240*time.Minute, time.Second, &n)...)
	cfg := replayConfig()
	drop := DefaultRules()[3]
	cfg.Rules = []Rule{drop}
	var got []Notice
	for _, n := range runEngine(t, cfg, stream) {
		if n.Kind != KindReminder { // hourly while it fires
			got = append(got, n)
		}
	}
	if len(got) != 2 || got[0].Kind != KindFiring || got[1].Kind != KindResolved {
		t.Fatalf("got %v, want the drop to fire once and resolve once", kinds(got))
	}
	// 6 calls a minute against 60: below a quarter once the 10-minute
	// window holds fewer than 150 calls, 8m20s in; pending at the next
	// step, firing for later.
	if at := got[0].At.Sub(t0); at != 78*time.Minute+30*time.Second+drop.For {
		t.Errorf("the drop fired at +%s, want 1h19m30s", at)
	}
	if at := got[1].At.Sub(t0); at < 200*time.Minute || at > 200*time.Minute+drop.Window+drop.KeepFiringFor {
		t.Errorf("the drop resolved at +%s, want after calls came back at 3h20m", at)
	}
	if got[0].Baseline != 60 || got[0].Alert.Threshold != 15 {
		t.Errorf("baseline %v/min, threshold %v, want 60 and 15", got[0].Baseline, got[0].Alert.Threshold)
	}
}

// TestAbsenceNeedsExpectedCalls: a 10-minute silence fires the absence
// rule for a busy org, but not for a quiet one whose baseline expects
// fewer than min_expected calls in the window, nor before the evaluator
// knows a baseline at all.
func TestAbsenceNeedsExpectedCalls(t *testing.T) {
	tests := []struct {
		name       string
		gap        time.Duration // between calls, outside the silence
		silentFrom time.Duration
		fires      bool
	}{
		{"busy org", 5 * time.Second, 90 * time.Minute, true},                    // 12/min: 60 expected in 5 minutes
		{"quiet org", 15 * time.Second, 90 * time.Minute, false},                 // 4/min: 20 expected, below 30
		{"busy org, baseline unknown", 5 * time.Second, 30 * time.Minute, false}, // 30 minutes of history
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			stream := every("o", 0, tt.silentFrom, tt.gap, &n)
			stream = append(stream, every("o", tt.silentFrom+10*time.Minute, tt.silentFrom+30*time.Minute, tt.gap, &n)...)
			cfg := replayConfig()
			absence := DefaultRules()[2]
			cfg.Rules = []Rule{absence}
			got := runEngine(t, cfg, stream)
			if !tt.fires {
				if len(got) != 0 {
					t.Fatalf("got %v, want nothing", kinds(got))
				}
				return
			}
			if len(got) != 2 || got[0].Kind != KindFiring || got[1].Kind != KindResolved {
				t.Fatalf("got %v, want a firing and a resolution", kinds(got))
			}
			if at, want := got[0].At.Sub(t0), tt.silentFrom-tt.gap+absence.Window; at <= want || at > want+cfg.EvaluationInterval {
				t.Errorf("fired at +%s, want the first step after %s (5 minutes after the last call)", at, want)
			}
			if at, want := got[1].At.Sub(t0), tt.silentFrom+10*time.Minute+absence.KeepFiringFor; at < want || at > want+cfg.EvaluationInterval {
				t.Errorf("resolved at +%s, want %s (keep_firing_for after the first call back)", at, want)
			}
		})
	}
}
