package alerting

import (
	"fmt"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

// TestSimulatorIncidents drives the default rules with the simulator's
// scripted incidents, read the way the producer reads them: every 30 s, the
// window that closed 30 s ago, newest first, plus the first run's hour of
// backlog.
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
	seen := map[string]bool{}
	from := start.Add(-time.Hour)
	for now := start; now.Before(start.Add(25 * time.Minute)); now = now.Add(poll) {
		to := now.Add(-settle)
		for _, org := range sim.Orgs() {
			for i, r := range sim.GroundTruthWindow(org, from, to, now) {
				key := r.ID
				if key == "" {
					key = fmt.Sprint(org, r.SourceNumber, r.DestinationNumber, r.CallType, r.CreationTime.UnixNano())
				}
				if seen[key] {
					continue
				}
				seen[key] = true
				ev := schemas.CallEvent{EventID: fmt.Sprint(now.Unix(), org, i), Org: org, CallKey: key, Revision: 1,
					SourceNumber: r.SourceNumber, DestinationNumber: r.DestinationNumber, CallType: r.CallType,
					CallStatus: r.CallStatus, CreationTime: r.CreationTime, EndReason: r.EndReason, ObservedAt: now}
				e.Observe("", &ev, now)
				got = append(got, e.TakeNotices()...)
			}
		}
		from = to
	}
	// From a call's creation to its evaluation: settle lag, up to a poll
	// interval, the grace period and a step.
	lag := settle + poll + cfg.Grace + cfg.EvaluationInterval
	spike, burst := cfg.Rules[0], cfg.Rules[1]
	checkNoticesAt(t, got, start, []wantNotice{
		{KindFiring, spike.Name, "acme", 2 * time.Minute, 2*time.Minute + spike.Window + spike.For + lag},
		{KindResolved, spike.Name, "acme", 5 * time.Minute, 5*time.Minute + spike.Window + spike.KeepFiringFor + lag},
		{KindFiring, burst.Name, "globex", 10 * time.Minute, 10*time.Minute + burst.Window + burst.For + lag},
		{KindResolved, burst.Name, "globex", 12 * time.Minute, 12*time.Minute + burst.Window + burst.KeepFiringFor + lag},
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
