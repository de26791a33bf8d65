package alerting

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

// TestSimulatorIncidents drives the default rules with the simulator's
// scripted incidents, read the way the producer reads them: every 30 s, the
// window that closed 30 s ago, published oldest first, after the first
// run's hour of backlog. The evaluator runs as the plug-in does, with the
// startup hold and a tick at every poll.
func TestSimulatorIncidents(t *testing.T) {
	start := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC) // the simulator's daily peak
	simCfg := unpodsim.DefaultConfig()
	simCfg.Clock = func() time.Time { return start }
	sim, err := unpodsim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	const poll, settle = 30 * time.Second, 30 * time.Second
	cfg := DefaultConfig()
	e := newEngine(cfg)
	var got []Notice
	rd := newSimReader(sim, start.Add(-time.Hour))
	for now := start; now.Before(start.Add(40 * time.Minute)); now = now.Add(poll) {
		e.Tick(now)
		got = append(got, e.TakeNotices()...)
		evs := rd.poll(now, settle)
		for i := range evs {
			e.Observe("", &evs[i], now)
			got = append(got, e.TakeNotices()...)
		}
	}
	// From a call's creation to its evaluation: settle lag, up to a poll
	// interval, the grace period and a step.
	lag := settle + poll + cfg.Grace + cfg.EvaluationInterval
	step := cfg.EvaluationInterval
	spike, burst, absence, drop := cfg.Rules[0], cfg.Rules[1], cfg.Rules[2], cfg.Rules[3]
	// The initech outage runs from 20 to 30 minutes: the absence alert
	// fires once its window holds no call and resolves keep_firing_for
	// after the first call is back; the volume drop fires once fewer than
	// a quarter of the expected calls are left in its window (after three
	// quarters of it went silent) and for has passed.
	outage, back := 20*time.Minute, 30*time.Minute
	checkNoticesAt(t, got, start, []wantNotice{
		{KindFiring, spike.Name, "acme", 2 * time.Minute, 2*time.Minute + spike.Window + spike.For + lag},
		{KindResolved, spike.Name, "acme", 5 * time.Minute, 5*time.Minute + spike.Window + spike.KeepFiringFor + lag},
		{KindFiring, burst.Name, "globex", 10 * time.Minute, 10*time.Minute + burst.Window + burst.For + lag},
		{KindResolved, burst.Name, "globex", 12 * time.Minute, 12*time.Minute + burst.Window + burst.KeepFiringFor + lag},
		{KindFiring, absence.Name, "initech", outage + absence.Window - step, outage + absence.Window + absence.For + step},
		{KindFiring, drop.Name, "initech", outage + drop.Window/2 + drop.For, outage + drop.Window + drop.For},
		{KindResolved, absence.Name, "initech", back + absence.KeepFiringFor, back + absence.KeepFiringFor + 2*step},
		{KindResolved, drop.Name, "initech", back + drop.KeepFiringFor, back + drop.Window + drop.KeepFiringFor},
		{KindFiring, spike.Name, "acme", 32 * time.Minute, 32*time.Minute + spike.Window + spike.For + lag},
		{KindResolved, spike.Name, "acme", 35 * time.Minute, 35*time.Minute + spike.Window + spike.KeepFiringFor + lag},
	})
	for _, n := range got {
		t.Logf("%s %s %s: event time +%s, value %.2f (%d of %d)", n.Kind, n.Alert.Rule, n.Alert.Org, n.At.Sub(start), n.Alert.Value, n.Count, n.Total)
	}
}

// checkNoticesAt is checkNotices with times relative to origin and one
// alert per rule.
func checkNoticesAt(t *testing.T, got []Notice, origin time.Time, want []wantNotice) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d notices %v, want %d", len(got), kinds(got), len(want))
	}
	for i, w := range want {
		n := got[i]
		at := n.At.Sub(origin)
		if n.Kind != w.kind || n.Alert.Rule != w.rule || n.Alert.Org != w.org || at < w.from || at > w.to {
			t.Errorf("notice %d = %s %s %s at +%s, want %s %s %s in [+%s, +%s]", i, n.Kind, n.Alert.Rule, n.Alert.Org, at, w.kind, w.rule, w.org, w.from, w.to)
		}
	}
}

// simReader reads the simulator's ground truth the way the producer reads
// the API: at each poll the window up to settle ago, each org's calls
// oldest first (the API lists newest first; the producer publishes each
// window in creation order), every call once.
type simReader struct {
	sim  *unpodsim.Server
	from time.Time
	seen map[string]bool
	n    int
}

func newSimReader(sim *unpodsim.Server, from time.Time) *simReader {
	return &simReader{sim: sim, from: from, seen: map[string]bool{}}
}

func (rd *simReader) poll(now time.Time, settle time.Duration) []schemas.CallEvent {
	to := now.Add(-settle)
	var out []schemas.CallEvent
	for _, org := range rd.sim.Orgs() {
		recs := rd.sim.GroundTruthWindow(org, rd.from, to, now)
		slices.Reverse(recs)
		for _, r := range recs {
			key := r.ID
			if key == "" {
				key = fmt.Sprint(org, r.SourceNumber, r.DestinationNumber, r.CallType, r.CreationTime.UnixNano())
			}
			if rd.seen[key] {
				continue
			}
			rd.seen[key] = true
			rd.n++
			out = append(out, schemas.CallEvent{EventID: fmt.Sprint("sim-", rd.n), Org: org, CallKey: key, Revision: 1,
				SourceNumber: r.SourceNumber, DestinationNumber: r.DestinationNumber, CallType: r.CallType,
				CallStatus: r.CallStatus, CreationTime: r.CreationTime, EndReason: r.EndReason, ObservedAt: now})
		}
	}
	rd.from = to
	return out
}
