package alerting

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/callstream/callstream/schemas"
)

func decodeAlert(t *testing.T, data []byte) schemas.AlertEvent {
	t.Helper()
	var a schemas.AlertEvent
	if err := json.Unmarshal(data, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// normal is three orgs of ordinary traffic: 10% of inbound calls missed, 1%
// of calls failed, calls arriving up to 20 s out of order.
func normal(length time.Duration, incidents ...incident) traffic {
	return traffic{
		start: t0, length: length, orgs: []string{"acme", "globex", "initech"}, perMinute: 30,
		missed: 0.10, failed: 0.01, incidents: incidents, disorder: 20 * time.Second, seed: 42,
	}
}

func TestScenarios(t *testing.T) {
	cfg := replayConfig()
	spike := cfg.Rules[0]
	burst := cfg.Rules[1]
	step := cfg.EvaluationInterval
	tests := []struct {
		name    string
		traffic traffic
		// want lists the expected notices as (kind, rule, org) with the
		// event-time range each must fall in, relative to t0: no sooner
		// than for after the incident starts (keep_firing_for after it
		// ends), no later than a window, for (keep_firing_for) and a step
		// or two after.
		want []wantNotice
	}{
		{
			name: "missed-call spike fires once and resolves",
			traffic: normal(3*time.Hour,
				incident{org: "acme", from: 90 * time.Minute, to: 96 * time.Minute, status: schemas.StatusMissed, share: 0.7}),
			want: []wantNotice{
				{KindFiring, spike.Name, "acme", 90*time.Minute + spike.For, 90*time.Minute + spike.Window + spike.For + step},
				{KindResolved, spike.Name, "acme", 96*time.Minute + spike.KeepFiringFor, 96*time.Minute + spike.Window + spike.KeepFiringFor + 2*step},
			},
		},
		{
			name: "failed-call burst fires once and resolves",
			traffic: normal(2*time.Hour,
				incident{org: "globex", from: 30 * time.Minute, to: 33 * time.Minute, status: schemas.StatusFailed, share: 0.5}),
			want: []wantNotice{
				{KindFiring, burst.Name, "globex", 30*time.Minute + burst.For, 30*time.Minute + burst.Window + burst.For + step},
				{KindResolved, burst.Name, "globex", 33*time.Minute + burst.KeepFiringFor, 33*time.Minute + burst.Window + burst.KeepFiringFor + 2*step},
			},
		},
		{
			name: "a long spike sends an hourly reminder",
			traffic: normal(4*time.Hour,
				incident{org: "initech", from: 90 * time.Minute, to: 170 * time.Minute, status: schemas.StatusMissed, share: 0.7}),
			want: []wantNotice{
				{KindFiring, spike.Name, "initech", 90*time.Minute + spike.For, 90*time.Minute + spike.Window + spike.For + step},
				{KindReminder, spike.Name, "initech", 150 * time.Minute, 150*time.Minute + spike.Window + spike.For + step},
				{KindResolved, spike.Name, "initech", 170*time.Minute + spike.KeepFiringFor, 170*time.Minute + spike.Window + spike.KeepFiringFor + 2*step},
			},
		},
		{
			name:    "a simulated day of noisy traffic fires nothing",
			traffic: traffic{start: t0, length: 24 * time.Hour, orgs: []string{"a", "b", "c", "d"}, perMinute: 40, diurnal: true, missed: 0.15, failed: 0.04, disorder: 25 * time.Second, seed: 7},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := tt.traffic.generate()
			got := runEngine(t, cfg, stream)
			checkNotices(t, got, tt.want)
			// The ranges above say the alerts belong to the incidents;
			// the reference model pins each notice to its evaluation, so
			// for, keep_firing_for and the baseline each decide a step.
			if want, got := referenceNotices(cfg, stream), asRef(got); !slices.Equal(got, want) {
				t.Fatal(diffRef(got, want))
			}
		})
	}
}

type wantNotice struct {
	kind, rule, org string
	from, to        time.Duration
}

func checkNotices(t *testing.T, got []Notice, want []wantNotice) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d notices %v, want %d", len(got), kinds(got), len(want))
	}
	for i, w := range want {
		n := got[i]
		at := n.At.Sub(t0)
		if n.Kind != w.kind || n.Alert.Rule != w.rule || n.Alert.Org != w.org || at < w.from || at > w.to {
			t.Errorf("notice %d = %s at +%s, want %s %s %s in [+%s, +%s]", i, n.Kind+" "+n.Alert.Rule+" "+n.Alert.Org, at, w.kind, w.rule, w.org, w.from, w.to)
		}
	}
	// One alert id per firing, shared by its reminders and resolution.
	if len(got) > 0 {
		for _, n := range got[1:] {
			if n.Alert.AlertID != got[0].Alert.AlertID {
				t.Errorf("alert ids differ within one firing: %s vs %s", n.Alert.AlertID, got[0].Alert.AlertID)
			}
		}
	}
}

func TestBlipBelowMinimumVolume(t *testing.T) {
	cfg := replayConfig()
	// A quiet org: one call every 5 minutes, and for a moment only missed
	// calls: 100% missed, but far from min_volume.
	var evs []schemas.CallEvent
	for i := range 60 {
		ev := call(i, "quiet", time.Duration(i)*5*time.Minute, schemas.StatusCompleted)
		if i == 30 {
			ev.CallStatus = schemas.StatusMissed
		}
		evs = append(evs, ev)
	}
	if got := runEngine(t, cfg, evs); len(got) != 0 {
		t.Fatalf("a one-call blip fired: %v", kinds(got))
	}
	// The same org with a real burst of missed calls fires: the guard is
	// volume, not the org.
	for i := range 40 {
		evs = append(evs, call(100+i, "quiet", 300*time.Minute+time.Duration(i)*2*time.Second, schemas.StatusMissed))
	}
	evs = append(evs, call(200, "quiet", 310*time.Minute, schemas.StatusCompleted))
	if got := runEngine(t, cfg, evs); len(got) == 0 || got[0].Kind != KindFiring {
		t.Fatalf("a real burst did not fire: %v", kinds(got))
	}
}

func call(n int, org string, at time.Duration, status string) schemas.CallEvent {
	return schemas.CallEvent{
		EventID: "e" + itoa(n), Org: org, CallKey: "k" + itoa(n), Revision: 1, CallType: schemas.CallInbound,
		CallStatus: status, CreationTime: t0.Add(at), SourceNumber: "+1", DestinationNumber: "+2",
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestLateEvents(t *testing.T) {
	cfg := replayConfig()
	base := normal(2*time.Hour, incident{org: "acme", from: 30 * time.Minute, to: 34 * time.Minute, status: schemas.StatusFailed, share: 0.6})
	base.disorder = 0
	ordered := base.generate()
	want := runEngine(t, cfg, ordered)
	if len(want) != 2 {
		t.Fatalf("in-order stream gave %v, want a firing and a resolution", kinds(want))
	}

	// Delay every failed call of the incident by less than the grace
	// period: the outcome is the same.
	delayed := delay(ordered, cfg.Grace-5*time.Second)
	got := runEngine(t, cfg, delayed)
	if len(got) != 2 || got[0].Kind != KindFiring || got[1].Kind != KindResolved || !got[0].At.Equal(want[0].At) {
		t.Fatalf("failed calls late within grace: got %v, want %v", kinds(got), kinds(want))
	}

	// Delay them by more than the grace period plus a step: they are late,
	// counted as such and do not fire.
	tooLate := delay(ordered, cfg.Grace+2*cfg.EvaluationInterval)
	e := newEngine(cfg)
	late, failed := 0, 0
	var notices []Notice
	for i := range tooLate {
		if tooLate[i].CallStatus == schemas.StatusFailed && tooLate[i].CreationTime.Before(t0.Add(time.Hour)) {
			failed++
		}
		if e.Observe("", &tooLate[i], wall) == Late {
			late++
			if tooLate[i].CallStatus != schemas.StatusFailed {
				t.Fatalf("an on-time call was counted late: %+v", tooLate[i])
			}
		}
		notices = append(notices, e.TakeNotices()...)
	}
	if len(notices) != 0 {
		t.Fatalf("calls beyond grace fired: %v", kinds(notices))
	}
	// Failed calls held back at the very end of the stream arrive before
	// the watermark passes them; all those of the first hour are late.
	if late < failed || failed < 50 {
		t.Fatalf("late = %d, want at least the %d delayed failed calls of the first hour", late, failed)
	}
}

// delay moves every failed call later in the arrival order by d of event
// time (it arrives with the calls created d after it).
func delay(evs []schemas.CallEvent, d time.Duration) []schemas.CallEvent {
	var out, held []schemas.CallEvent
	for _, ev := range evs {
		for len(held) > 0 && !held[0].CreationTime.Add(d).After(ev.CreationTime) {
			out = append(out, held[0])
			held = held[1:]
		}
		if ev.CallStatus == schemas.StatusFailed {
			held = append(held, ev)
			continue
		}
		out = append(out, ev)
	}
	return append(out, held...)
}

func TestRevisionsAndRedeliveryCountOnce(t *testing.T) {
	cfg := replayConfig()
	cfg.Rules = []Rule{{Name: "failed", Match: Match{CallStatus: []string{schemas.StatusFailed}}, Window: time.Minute, MinCount: 3}}
	e := newEngine(cfg)
	obs := func(ev schemas.CallEvent) Outcome { return e.Observe("", &ev, wall) }
	// Two calls, each delivered twice, then first revised to completed.
	a, b := call(1, "o", 0, schemas.StatusFailed), call(2, "o", time.Second, schemas.StatusFailed)
	for _, ev := range []schemas.CallEvent{a, a, b, b} {
		obs(ev)
	}
	if got := obs(a); got != Duplicate {
		t.Fatalf("redelivery outcome = %v, want Duplicate", got)
	}
	c := call(3, "o", 2*time.Second, schemas.StatusFailed)
	obs(c)
	a2 := a
	a2.Revision, a2.CallStatus = 2, schemas.StatusCompleted
	obs(a2)
	// Move time on: only b and c are failed in the window: 2 < 3.
	obs(call(4, "o", 3*time.Minute, schemas.StatusCompleted))
	if n := e.TakeNotices(); len(n) != 0 {
		t.Fatalf("duplicates or a replaced revision were counted: %v", kinds(n))
	}
	g := e.rules[0].groups["o"]
	if g == nil {
		t.Fatal("group o missing")
	}
}

func TestPartitionsAndIdleness(t *testing.T) {
	cfg := replayConfig()
	e := newEngine(cfg)
	wall := t0.Add(24 * time.Hour)
	ev := func(n int, at time.Duration) *schemas.CallEvent {
		c := call(n, "o", at, schemas.StatusCompleted)
		return &c
	}
	e.Observe("0", ev(1, 0), wall)
	e.Observe("1", ev(2, 0), wall)
	// Partition 0 runs ahead; partition 1 holds the watermark back.
	e.Observe("0", ev(3, 10*time.Minute), wall)
	if wm := e.Watermark(); wm.After(t0) {
		t.Fatalf("watermark %s passed the slow partition", wm)
	}
	// Partition 1 stays silent past idle_timeout: it no longer holds it back.
	wall = wall.Add(cfg.IdleTimeout + time.Second)
	e.Observe("0", ev(4, 10*time.Minute+time.Second), wall)
	want := t0.Add(10*time.Minute + time.Second - cfg.Grace)
	if wm := e.Watermark(); wm.Before(want.Add(-cfg.EvaluationInterval)) || wm.After(want) {
		t.Fatalf("watermark %s, want about %s once partition 1 is idle", wm, want)
	}
	// Every partition silent: event time moves on with the wall clock.
	before := e.Watermark()
	e.Tick(wall.Add(cfg.IdleTimeout + 5*time.Minute))
	if !e.Watermark().After(before.Add(4 * time.Minute)) {
		t.Fatalf("watermark %s did not move on while all partitions were idle (was %s)", e.Watermark(), before)
	}
}

// TestAllIdleAtExactlyIdleTimeout: once every source has been silent for
// idle_timeout (exactly: a silence of idle_timeout is idle, as in the
// heap), a lagging source stops holding the watermark back and event time
// stands at the newest call less grace.
func TestAllIdleAtExactlyIdleTimeout(t *testing.T) {
	cfg := replayConfig()
	e := newEngine(cfg)
	slow, fast := call(1, "o", time.Minute, schemas.StatusCompleted), call(2, "o", 5*time.Minute, schemas.StatusCompleted)
	e.Observe("0", &slow, wall)
	e.Observe("1", &fast, wall)
	if wm := e.Watermark(); wm.After(t0) {
		t.Fatalf("watermark %s passed the slow partition", wm)
	}
	e.Tick(wall.Add(cfg.IdleTimeout - time.Nanosecond))
	if wm := e.Watermark(); wm.After(t0) {
		t.Fatalf("watermark %s passed the slow partition before it was idle", wm)
	}
	e.Tick(wall.Add(cfg.IdleTimeout))
	if wm, want := e.Watermark(), t0.Add(5*time.Minute-cfg.Grace); !wm.Equal(want) {
		t.Fatalf("every source silent for exactly idle_timeout: watermark %s, want %s", wm, want)
	}
}

// TestParkedCallsApplyInStepOrder: calls of a partition far ahead of the
// watermark are parked, and a parked call must be counted before its step
// is evaluated even when a later call parked before it is still too far
// ahead to fit.
func TestParkedCallsApplyInStepOrder(t *testing.T) {
	cfg := replayConfig()
	cfg.Rules = []Rule{{Name: "failed", Match: Match{CallStatus: []string{schemas.StatusFailed}}, Window: time.Minute, MinCount: 1}}
	e := newEngine(cfg)
	obs := func(partition string, ev schemas.CallEvent) { e.Observe(partition, &ev, wall) }
	obs("slow", call(1, "slow", 0, schemas.StatusCompleted))
	obs("fast", call(2, "fast", 40*time.Minute, schemas.StatusFailed))
	obs("fast", call(3, "fast", 15*time.Minute, schemas.StatusFailed))
	obs("slow", call(4, "slow", 17*time.Minute, schemas.StatusCompleted))
	n := e.TakeNotices()
	if len(n) == 0 || n[0].Kind != KindFiring || n[0].Alert.Org != "fast" || n[0].At.Sub(t0) > 16*time.Minute {
		t.Fatalf("got %v, want the failed call at 15 min to fire before 16 min", kinds(n))
	}
}

// TestMemoryStaysBounded: a consumer runs for months, so what the engine
// remembers (calls, for redeliveries and revisions; groups, one per
// number) must follow the recent calls, not all of them: two hours of
// calls from a new number each second leave only the last minutes'.
func TestMemoryStaysBounded(t *testing.T) {
	cfg := replayConfig()
	cfg.Rules = []Rule{{Name: "per-number", Match: Match{CallStatus: []string{schemas.StatusFailed}},
		GroupBy: []string{LabelSourceNumber}, Window: time.Minute, MinCount: 3}}
	e := newEngine(cfg)
	const calls = 2 * 3600
	for i := range calls {
		ev := call(i, "o", time.Duration(i)*time.Second, schemas.StatusCompleted)
		ev.SourceNumber = "+1" + itoa(i)
		e.Observe("", &ev, wall)
	}
	// Ten minutes of calls is far more than grace and window need.
	const recent = 600
	if n := len(e.calls) + len(e.oldCalls); n > recent {
		t.Errorf("the engine remembers %d of %d calls, want at most %d", n, calls, recent)
	}
	if n := len(e.rules[0].groups); n > recent {
		t.Errorf("the rule keeps %d groups of %d numbers, want at most %d", n, calls, recent)
	}
}

// TestRatioOfEmptyWindow: a ratio alert resolves when its org falls
// silent, and the resolving notice carries a ratio of 0, not 0/0 (NaN,
// which JSON cannot carry).
func TestRatioOfEmptyWindow(t *testing.T) {
	cfg := replayConfig()
	cfg.Rules = []Rule{{Name: "ratio", Match: Match{CallStatus: []string{schemas.StatusFailed}}, Window: time.Minute, MinRatio: 0.5}}
	e := newEngine(cfg)
	for i := range 10 {
		ev := call(i, "quiet", time.Duration(i)*time.Second, schemas.StatusFailed)
		e.Observe("", &ev, wall)
	}
	// The quiet org idle on the wall clock, the busy one moves event time.
	later := wall.Add(cfg.IdleTimeout)
	for i := range 30 {
		ev := call(100+i, "busy", time.Duration(i)*10*time.Second, schemas.StatusCompleted)
		e.Observe("", &ev, later)
	}
	got := e.TakeNotices()
	if len(got) != 2 || got[0].Kind != KindFiring || got[1].Kind != KindResolved {
		t.Fatalf("got %v, want the quiet org to fire and resolve", kinds(got))
	}
	if v := got[1].Alert.Value; v != 0 {
		t.Fatalf("the resolving notice's ratio is %v, want 0 for an empty window", v)
	}
	if _, err := json.Marshal(got[1].Alert); err != nil {
		t.Fatalf("the resolving notice does not encode: %v", err)
	}
}

// TestRevisionAfterForgetting: the engine forgets the calls of closed
// steps a generation at a time, and must keep a call of the first open
// step, whose revision may still come. Each start offset puts a
// generation swap at another step, one of them at the call's.
func TestRevisionAfterForgetting(t *testing.T) {
	cfg := replayConfig()
	cfg.Rules = []Rule{{Name: "failed", Match: Match{CallStatus: []string{schemas.StatusFailed}}, Window: cfg.EvaluationInterval, MinCount: 2}}
	step := cfg.EvaluationInterval
	for offset := range 10 {
		e := newEngine(cfg)
		obs := func(partition string, ev schemas.CallEvent) { e.Observe(partition, &ev, wall) }
		n := 0
		slow := func(at time.Duration) { n++; obs("slow", call(1000+n, "o", at, schemas.StatusCompleted)) }
		slow(time.Duration(offset) * step)
		x := call(1, "o", 5*time.Minute, schemas.StatusFailed)
		obs("fast", x)
		obs("fast", call(2, "o", 10*time.Minute, schemas.StatusCompleted))
		// The slow partition moves the watermark a step at a time up to
		// the call's step, the first open one.
		for at := time.Duration(offset+1) * step; at <= 5*time.Minute+cfg.Grace; at += step {
			slow(at)
		}
		if !e.Watermark().Equal(x.CreationTime) {
			t.Fatalf("offset %d: watermark %s, want %s", offset, e.Watermark(), x.CreationTime)
		}
		x.Revision = 2
		obs("fast", x)
		slow(5*time.Minute + cfg.Grace + 2*step)
		if got := e.TakeNotices(); len(got) != 0 {
			t.Fatalf("offset %d: one failed call fired a rule of two (its revision counted as another): %v", offset, kinds(got))
		}
	}
}

func TestGroupByNumber(t *testing.T) {
	cfg := replayConfig()
	cfg.Rules = []Rule{{
		Name: "line-down", Match: Match{CallStatus: []string{schemas.StatusMissed}, Numbers: []string{"+2", "+3"}},
		GroupBy: []string{LabelDestinationNumber}, Window: time.Minute, MinCount: 5,
	}}
	var evs []schemas.CallEvent
	for i := range 30 {
		ev := call(i, "o", time.Duration(i)*time.Second, schemas.StatusMissed)
		ev.DestinationNumber = []string{"+2", "+3", "+4"}[i%3]
		evs = append(evs, ev)
	}
	evs = append(evs, call(99, "o", 5*time.Minute, schemas.StatusCompleted))
	got := runEngine(t, cfg, evs)
	// +2 and +3 each miss 10 calls (+4 is not watched): two alerts, not one
	// for the org.
	firing := map[string]bool{}
	for _, n := range got {
		if g := n.Alert.Group; len(g) != 2 || g["org"] != "o" {
			t.Fatalf("group = %v", g)
		}
		if n.Kind == KindFiring {
			firing[n.Alert.Group["destination_number"]] = true
		}
	}
	if len(got) != 4 || len(firing) != 2 || !firing["+2"] || !firing["+3"] {
		t.Fatalf("got %v firing for %v, want +2 and +3 to fire and resolve apart", kinds(got), firing)
	}
}

func TestFutureCallsAndLongSilence(t *testing.T) {
	cfg := replayConfig()
	e := newEngine(cfg)
	now := t0.Add(10 * time.Minute)
	obs := func(ev schemas.CallEvent, now time.Time) Outcome { return e.Observe("", &ev, now) }
	// A burst of failed calls, then a bogus call from next year.
	for i := range 20 {
		obs(call(i, "o", time.Duration(i)*time.Second, schemas.StatusFailed), now)
	}
	obs(call(50, "o", 3*time.Minute, schemas.StatusCompleted), now)
	if got := obs(call(99, "o", 365*24*time.Hour, schemas.StatusFailed), now); got != Future {
		t.Fatalf("a call from next year: %v, want Future", got)
	}
	if wm := e.Watermark(); wm.After(t0.Add(3 * time.Minute)) {
		t.Fatalf("a future call moved the watermark to %s", wm)
	}
	if n := e.TakeNotices(); len(n) != 1 || n[0].Kind != KindFiring {
		t.Fatalf("got %v, want the burst to fire", kinds(n))
	}
	// Thirty days of silence, then a call: the alert resolves and the
	// evaluator jumps over the rest of the silence.
	later := t0.Add(30 * 24 * time.Hour)
	if got := obs(call(100, "o", 30*24*time.Hour, schemas.StatusCompleted), later); got != Counted {
		t.Fatalf("outcome %v", got)
	}
	n := e.TakeNotices()
	if len(n) != 1 || n[0].Kind != KindResolved || n[0].At.After(t0.Add(10*time.Minute)) {
		t.Fatalf("got %v, want the resolution within minutes of the burst", kinds(n))
	}
	if wm := e.Watermark(); wm.Before(later.Add(-2 * cfg.Grace)) {
		t.Fatalf("watermark %s did not catch up with %s", wm, later)
	}
}

// TestClockSkewEdge: a call up to maxClockSkew ahead of the wall clock is
// a producer host's clock running fast and is counted; one further ahead
// is bogus and must not move event time.
func TestClockSkewEdge(t *testing.T) {
	for _, tc := range []struct {
		ahead time.Duration
		want  Outcome
	}{
		{maxClockSkew - time.Nanosecond, Counted},
		{maxClockSkew, Counted},
		{maxClockSkew + time.Nanosecond, Future},
	} {
		e := newEngine(replayConfig())
		ev := call(1, "o", 0, schemas.StatusFailed)
		if got := e.Observe("", &ev, t0.Add(-tc.ahead)); got != tc.want {
			t.Errorf("a call %s ahead of the wall clock: %v, want %v", tc.ahead, got, tc.want)
		}
	}
}

// TestLiveEqualsReplay feeds one stream as it would arrive live (wall clock
// 90 s behind event time, ticks between arrivals) and as a fast replay (one
// wall-clock instant): the notices are the same.
func TestLiveEqualsReplay(t *testing.T) {
	cfg := replayConfig()
	stream := normal(6*time.Hour,
		incident{org: "acme", from: 90 * time.Minute, to: 100 * time.Minute, status: schemas.StatusMissed, share: 0.8},
		incident{org: "globex", from: 4 * time.Hour, to: 4*time.Hour + 3*time.Minute, status: schemas.StatusFailed, share: 0.5},
	).generate()
	replay := runEngine(t, cfg, stream)
	if len(replay) < 4 {
		t.Fatalf("replay gave %v, want two firings and two resolutions", kinds(replay))
	}
	e := newEngine(cfg)
	var live []Notice
	last := time.Time{}
	for i := range stream {
		now := stream[i].CreationTime.Add(90 * time.Second)
		if now.Before(last) {
			now = last // arrivals are in wall-clock order
		}
		for tick := last.Add(tickInterval); !last.IsZero() && tick.Before(now); tick = tick.Add(5 * time.Second) {
			e.Tick(tick)
		}
		last = now
		e.Observe("", &stream[i], now)
		live = append(live, e.TakeNotices()...)
	}
	if len(live) != len(replay) {
		t.Fatalf("live gave %v, replay %v", kinds(live), kinds(replay))
	}
	for i := range live {
		if live[i].ID != replay[i].ID || live[i].Kind != replay[i].Kind || !live[i].At.Equal(replay[i].At) {
			t.Fatalf("notice %d: live %s, replay %s", i, kinds(live[i:i+1]), kinds(replay[i:i+1]))
		}
	}
}

// TestInvariantsOnMessyStreams throws revisions, redeliveries, disorder,
// skewed partitions and silences at the evaluator and checks that counts
// stay sane and every alert goes firing, reminders, resolved in order.
func TestInvariantsOnMessyStreams(t *testing.T) {
	for seed := range uint64(3) {
		cfg := replayConfig()
		cfg.Rules = append(cfg.Rules, Rule{Name: "per-line", Match: Match{CallStatus: []string{schemas.StatusFailed}},
			GroupBy: []string{LabelSourceNumber}, Window: 30 * time.Second, MinCount: 2, RepeatInterval: time.Minute})
		stream := normal(3*time.Hour,
			incident{org: "acme", from: time.Hour, to: 70 * time.Minute, status: schemas.StatusFailed, share: 0.5},
			incident{org: "globex", from: 2 * time.Hour, to: 2*time.Hour + 5*time.Minute, status: schemas.StatusMissed, share: 0.9})
		stream.seed, stream.disorder = seed, 2*time.Minute
		evs := stream.generate()
		rng := rand.New(rand.NewPCG(seed, 1))
		e := newEngine(cfg)
		state := map[string]string{} // alert id -> last kind
		now := t0.Add(4 * time.Hour)
		for i := range evs {
			ev := evs[i]
			switch rng.IntN(10) {
			case 0: // a later revision with another status
				ev.Revision = 2
				ev.CallStatus = []string{schemas.StatusCompleted, schemas.StatusMissed, schemas.StatusFailed}[rng.IntN(3)]
			case 1: // a redelivery of an earlier call
				ev = evs[rng.IntN(i+1)]
			case 2: // a silence: time for the ticker
				now = now.Add(time.Duration(rng.IntN(90)) * time.Second)
				e.Tick(now)
			}
			e.Observe(itoa(rng.IntN(3)), &ev, now)
			for _, n := range e.TakeNotices() {
				prev := state[n.Alert.AlertID]
				ok := map[string]bool{
					"" + KindFiring: true, KindFiring + KindReminder: true, KindFiring + KindResolved: true,
					KindReminder + KindReminder: true, KindReminder + KindResolved: true,
				}[prev+n.Kind]
				if !ok {
					t.Fatalf("seed %d: alert %s went %q after %q", seed, n.Alert.AlertID, n.Kind, prev)
				}
				state[n.Alert.AlertID] = n.Kind
			}
			for _, r := range e.rules {
				for _, g := range r.groups {
					if g.winMatch < 0 || g.winTotal < g.winMatch || g.baseMatch < 0 {
						t.Fatalf("seed %d: rule %s group %s: window %d of %d, baseline %d", seed, r.rule.Name, g.key, g.winMatch, g.winTotal, g.baseMatch)
					}
				}
			}
		}
		if len(state) < 2 {
			t.Fatalf("seed %d: only %d alerts; the incidents should have fired", seed, len(state))
		}
	}
}

// TestLaggingOrgIsNotLate: on one partition, org beta catches up on the
// last half hour while acme is live. Each org is its own watermark source,
// so beta's calls are counted, not dropped as late.
func TestLaggingOrgIsNotLate(t *testing.T) {
	e := newEngine(replayConfig())
	n := 0
	next := func(org string, at time.Duration) Outcome {
		n++
		ev := call(n, org, at, schemas.StatusCompleted)
		return e.Observe("0", &ev, wall)
	}
	if got := next("beta", 0); got != Counted { // both orgs start together
		t.Fatalf("beta's first call: %v", got)
	}
	for i := 0; i < 60; i++ { // acme, live: 30 minutes of calls
		if got := next("acme", time.Duration(i)*30*time.Second); got != Counted {
			t.Fatalf("acme call %d: %v", i, got)
		}
	}
	for i := 1; i < 60; i++ { // beta, catching up on the same 30 minutes
		if got := next("beta", time.Duration(i)*30*time.Second); got != Counted {
			t.Fatalf("beta call %d, %s behind acme: %v, want it counted", i, 30*time.Minute-time.Duration(i)*30*time.Second, got)
		}
	}
	// Within one org, event time still rules: once both orgs are past it,
	// a call far behind is late.
	if got := next("acme", 0); got != Late {
		t.Fatalf("acme call 30m behind both orgs: %v, want Late", got)
	}
}
