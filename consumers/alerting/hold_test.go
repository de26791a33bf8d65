package alerting

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/callstream/callstream/schemas"
)

// catchUp is two orgs' last hour as a first start reads it: the producer
// publishes acme's whole hour before beta's first call arrives (weak spot
// 1 of the last note), and beta's history starts ten minutes earlier. Beta
// had a failed-call burst 40 minutes in.
func catchUp() (acme, beta []schemas.CallEvent) {
	n := 0
	next := func(org string, at time.Duration, status string) schemas.CallEvent {
		n++
		ev := call(n, org, at, status)
		ev.ObservedAt = t0.Add(time.Hour)
		return ev
	}
	for at := 10 * time.Minute; at < time.Hour; at += 5 * time.Second {
		acme = append(acme, next("acme", at, schemas.StatusCompleted))
	}
	for at := time.Duration(0); at < time.Hour; at += 5 * time.Second {
		status := schemas.StatusCompleted
		if at >= 40*time.Minute && at < 43*time.Minute {
			status = schemas.StatusFailed
		}
		beta = append(beta, next("beta", at, status))
	}
	return acme, beta
}

// TestStartupHoldCountsEveryOrgsHistory: the evaluation clock stands
// still for startup_hold after the first call, so an org whose catch-up
// arrives after another's whole hour is counted, and its incident fires,
// instead of its history being dropped as late.
func TestStartupHoldCountsEveryOrgsHistory(t *testing.T) {
	acme, beta := catchUp()
	run := func(hold time.Duration) (late int, notices []Notice, e *engine) {
		cfg := DefaultConfig()
		cfg.StartupHold = hold
		e = newEngine(cfg)
		wall := t0.Add(time.Hour)
		for i := range acme {
			if e.Observe("0", &acme[i], wall) == Late {
				late++
			}
		}
		wall = wall.Add(20 * time.Second) // beta's first page comes later
		for i := range beta {
			if e.Observe("0", &beta[i], wall) == Late {
				late++
			}
		}
		notices = e.TakeNotices()
		e.Tick(wall.Add(hold + tickInterval))
		return late, append(notices, e.TakeNotices()...), e
	}

	late, notices, e := run(DefaultConfig().StartupHold)
	if late != 0 {
		t.Fatalf("%d calls of the catch-up counted late with the startup hold", late)
	}
	fired := false
	for _, n := range notices {
		if n.Kind == KindFiring && n.Alert.Rule == "failed-call-burst" && n.Alert.Org == "beta" {
			fired = true
			if at := n.At.Sub(t0); at < 40*time.Minute || at > 43*time.Minute {
				t.Errorf("beta's burst fired at +%s of event time, want within the burst", at)
			}
		}
	}
	if !fired {
		t.Fatalf("beta's failed-call burst did not fire after the hold: %v", kinds(notices))
	}
	// The hold ends: event time moved on to the newest calls, and a call
	// from before the watermark is late again.
	if wm := e.Watermark(); wm.Before(t0.Add(55 * time.Minute)) {
		t.Fatalf("watermark %s after the hold, want the catch-up evaluated", wm)
	}
	old := call(9999, "beta", 30*time.Minute, schemas.StatusFailed)
	if got := e.Observe("0", &old, t0.Add(2*time.Hour)); got != Late {
		t.Fatalf("a call 30 minutes behind after the hold: %v, want Late", got)
	}

	// Without the hold, beta's whole history is late and its burst is
	// lost: the case the hold is for.
	late, notices, _ = run(0)
	if late < len(beta)*9/10 {
		t.Fatalf("without the hold only %d of beta's %d calls were late; the scenario does not test the hold", late, len(beta))
	}
	for _, n := range notices {
		if n.Alert.Org == "beta" {
			t.Fatalf("without the hold beta's burst still fired: %v", kinds(notices))
		}
	}
}

// TestStartupHoldAfterRestore: a restored evaluator holds its clock too,
// but keeps its restored watermark: a redelivered backlog from before it
// stays late.
func TestStartupHoldAfterRestore(t *testing.T) {
	cfg := DefaultConfig()
	wm := t0.Add(30 * time.Minute)
	e := newEngine(cfg)
	if _, err := e.restore(savedState{Version: stateVersion, Watermark: &wm, Alerts: []savedAlert{}}); err != nil {
		t.Fatal(err)
	}
	wall := t0.Add(time.Hour)
	before := call(1, "acme", 20*time.Minute, schemas.StatusCompleted)
	after := call(2, "acme", 40*time.Minute, schemas.StatusCompleted)
	if got := e.Observe("0", &after, wall); got != Counted {
		t.Fatalf("a call after the restored watermark: %v", got)
	}
	if got := e.Observe("0", &before, wall); got != Late {
		t.Fatalf("a call before the restored watermark, during the hold: %v, want Late", got)
	}
	if !e.Watermark().Equal(wm) {
		t.Fatalf("watermark %s during the hold, want the restored %s", e.Watermark(), wm)
	}
}

// TestRestoredClockMovesWithSilence: after a restore, when the calls stop
// altogether, event time moves on from the restored watermark with the
// wall clock (so alerts resolve), as it does after calls seen in this
// process: idle_timeout of silence, then one second of event time per
// second of wall time. The one call that came is its source's first, so it
// raises no high-water mark: what the clock moves on from is the restored
// one.
func TestRestoredClockMovesWithSilence(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StartupHold = 0
	wm := t0.Add(30 * time.Minute)
	e := newEngine(cfg)
	if _, err := e.restore(savedState{Version: stateVersion, Watermark: &wm, Alerts: []savedAlert{}}); err != nil {
		t.Fatal(err)
	}
	wall := t0.Add(time.Hour)
	c := call(1, "acme", 30*time.Minute+10*time.Second, schemas.StatusCompleted)
	if got := e.Observe("0", &c, wall); got != Counted {
		t.Fatalf("a call after the restored watermark: %v", got)
	}
	for _, beyond := range []time.Duration{0, 10 * time.Second, 5 * time.Minute} {
		e.Tick(wall.Add(cfg.IdleTimeout + beyond))
		if want := wm.Add(beyond); !e.Watermark().Equal(want) {
			t.Fatalf("%s of silence beyond idle_timeout: watermark %s, want %s (the restored %s plus the silence)",
				beyond, e.Watermark(), want, wm)
		}
	}
}

// TestSnapshotIsCanonical: equal alert states encode to equal bytes
// whatever order the groups were made in, alerts sorted by rule, then
// group.
func TestSnapshotIsCanonical(t *testing.T) {
	cfg := DefaultConfig()
	wm := t0.Add(30 * time.Minute)
	var alerts []savedAlert
	for _, r := range cfg.Rules[:2] {
		for _, org := range []string{"beta", "acme", "gamma", "delta"} {
			alerts = append(alerts, savedAlert{Rule: r.Name, Group: map[string]string{LabelOrg: org}, State: "firing",
				ActiveAt: wm, LastTrue: wm, LastNotified: wm, AlertID: r.Name + "/" + org, Baseline: -1})
		}
	}
	encode := func(in []savedAlert) ([]byte, savedState) {
		e := newEngine(cfg)
		if _, err := e.restore(savedState{Version: stateVersion, Watermark: &wm, Alerts: in}); err != nil {
			t.Fatal(err)
		}
		s := e.snapshot()
		data, err := encodeState(s)
		if err != nil {
			t.Fatal(err)
		}
		return data, s
	}
	first, s := encode(alerts)
	if len(s.Alerts) != len(alerts) {
		t.Fatalf("snapshot holds %d alerts, want %d", len(s.Alerts), len(alerts))
	}
	for i := 1; i < len(s.Alerts); i++ {
		a, b := s.Alerts[i-1], s.Alerts[i]
		if a.Rule > b.Rule || (a.Rule == b.Rule && a.Group[LabelOrg] >= b.Group[LabelOrg]) {
			t.Fatalf("alert %d (%s %s) after %d (%s %s): want rule, then org order", i, b.Rule, b.Group[LabelOrg], i-1, a.Rule, a.Group[LabelOrg])
		}
	}
	for round := range 10 {
		shuffled := slices.Clone(alerts)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again, _ := encode(shuffled); string(again) != string(first) {
			t.Fatalf("round %d: the same alerts restored in another order encode differently:\n%s\n%s", round, again, first)
		}
	}
}
