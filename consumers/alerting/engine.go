package alerting

import (
	"cmp"
	"slices"
	"time"

	"github.com/callstream/callstream/schemas"
)

// Notification kinds. Firing and resolved are transitions and go to the
// alerts topic too; a reminder goes to the notifiers only.
const (
	KindFiring   = "firing"
	KindReminder = "reminder"
	KindResolved = "resolved"
)

// Notice is one thing to tell about an alert.
type Notice struct {
	// ID is deterministic (alert, kind, evaluation time): the ce_id on the
	// alerts topic and the webhook-id, so receivers can drop repeats.
	ID    string             `json:"id"`
	Kind  string             `json:"kind"`
	At    time.Time          `json:"at"` // the event time of the evaluation
	Alert schemas.AlertEvent `json:"alert"`
	// Count and Total are the matching and all calls of the group in the
	// window at that evaluation; Baseline is matching calls per minute in
	// the baseline window, -1 when the rule has none or history is short.
	Count    int64   `json:"count"`
	Total    int64   `json:"total"`
	Baseline float64 `json:"baseline"`
}

// Outcome says what the evaluator did with one call event.
type Outcome int

// Outcomes of Observe.
const (
	Counted   Outcome = iota // counted in its step
	Late                     // older than the evaluated watermark: not counted
	Duplicate                // a revision already counted (redelivery)
	Future                   // created implausibly far ahead of the wall clock: not counted
)

// maxClockSkew is how far ahead of the wall clock a creation_time may be.
// One bogus far-future call would otherwise drag the watermark along and
// make every real call late. In a replay the wall clock is ahead of every
// call, so this check never changes a replay's outcome.
const maxClockSkew = 10 * time.Minute

// partitionMark is one input partition's progress.
type partitionMark struct {
	high     int64 // newest creation_time seen
	lastSeen time.Time
}

// engine evaluates rules on event time. It is not safe for concurrent use;
// the plug-in serialises calls. Everything but idle detection depends only
// on the order of events, so a replay gives the same notices.
type engine struct {
	step, grace int64
	idleTimeout time.Duration
	rules       []*ruleEval

	started bool
	evalIdx int64 // the next step to evaluate: steps < evalIdx are frozen
	since   int64 // the step from which this process has seen every call
	parts   map[string]*partitionMark
	high    int64 // newest creation_time over all partitions
	arrival time.Time

	// Calls whose step is still open, by call_key, in two generations so
	// that forgetting is O(1) per evaluation step.
	calls, oldCalls map[string]callRec
	swapIdx         int64

	out []Notice
}

type callRec struct {
	rev    int
	fields callFields
}

func newEngine(cfg Config) *engine {
	e := &engine{
		step:        int64(cfg.EvaluationInterval),
		grace:       int64(cfg.Grace),
		idleTimeout: cfg.IdleTimeout,
		parts:       map[string]*partitionMark{},
		calls:       map[string]callRec{},
		oldCalls:    map[string]callRec{},
	}
	for i, r := range cfg.Rules {
		e.rules = append(e.rules, newRuleEval(r, i, cfg.EvaluationInterval, cfg.Grace))
	}
	return e
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// Watermark returns the evaluated event time: every step before it has been
// evaluated and is closed to new calls.
func (e *engine) Watermark() time.Time {
	if !e.started {
		return time.Time{}
	}
	return time.Unix(0, e.evalIdx*e.step).UTC()
}

// Observe counts one call event that arrived on partition at wall time now
// and evaluates every step the watermark passed. Notices produced are
// collected until TakeNotices.
func (e *engine) Observe(partition string, ev *schemas.CallEvent, now time.Time) Outcome {
	if ev.CreationTime.Sub(now) > maxClockSkew {
		return Future
	}
	t := ev.CreationTime.UnixNano()
	if !e.started {
		e.started = true
		e.evalIdx = floorDiv(t-e.grace, e.step)
		e.since = e.evalIdx
		e.swapIdx = e.evalIdx
		e.high = t
	}
	// Each org is polled by the producer at its own pace (one catching up
	// while another is live), so each org on each partition is its own
	// source: a lagging org holds the watermark back instead of having its
	// calls counted as late.
	source := partition + "/" + ev.Org
	p := e.parts[source]
	if p == nil {
		p = &partitionMark{high: t}
		e.parts[source] = p
	}
	p.lastSeen, e.arrival = now, now
	idx := floorDiv(t, e.step)
	if idx < e.evalIdx {
		return Late
	}
	f := callFields{idx: idx, org: ev.Org, src: ev.SourceNumber, dst: ev.DestinationNumber,
		typ: ev.CallType, stat: ev.CallStatus, reason: ev.EndReason}
	prev, known := e.calls[ev.CallKey]
	if !known {
		prev, known = e.oldCalls[ev.CallKey]
	}
	if known && ev.Revision <= prev.rev {
		return Duplicate
	}
	if t > p.high {
		p.high = t
		if t > e.high {
			e.high = t
		}
		e.advance(e.watermark(now))
	}
	if known && prev.fields.idx >= e.evalIdx {
		for _, r := range e.rules {
			r.contribute(&prev.fields, -1, "", e.evalIdx)
		}
	}
	for _, r := range e.rules {
		r.contribute(&f, 1, ev.EventID, e.evalIdx)
	}
	e.calls[ev.CallKey] = callRec{rev: ev.Revision, fields: f}
	return Counted
}

// watermark is the event time all live partitions have passed, less grace.
// Partitions silent for idleTimeout of wall time do not hold it back.
func (e *engine) watermark(now time.Time) int64 {
	wm, any := int64(0), false
	for _, p := range e.parts {
		if now.Sub(p.lastSeen) >= e.idleTimeout {
			continue
		}
		if !any || p.high < wm {
			wm, any = p.high, true
		}
	}
	if !any {
		return e.evalIdx*e.step - 1
	}
	return wm - e.grace
}

// Tick lets idle partitions stop holding the watermark back and, when every
// partition is idle, moves event time on with the wall clock, so that alerts
// resolve when calls stop coming altogether. It is the only use of the wall
// clock in evaluation.
func (e *engine) Tick(now time.Time) {
	if !e.started || e.arrival.IsZero() {
		// Nothing arrived since the start: no clock to move on from.
		return
	}
	wm := e.watermark(now)
	if silent := now.Sub(e.arrival); silent >= e.idleTimeout {
		// Counting from the end of idle_timeout, not from the last call,
		// keeps the next batch of a slow producer on time.
		wm = max(wm, e.high-e.grace+int64(silent-e.idleTimeout))
	}
	e.advance(wm)
}

// advance evaluates every step whose end is at or before wm.
func (e *engine) advance(wm int64) {
	last := floorDiv(wm, e.step) // evaluate steps ending at or before wm
	if last < e.evalIdx {
		return
	}
	for idx := e.evalIdx + 1; idx <= last; idx++ {
		if e.empty() {
			// Nothing counted, nothing pending or firing: the steps up to
			// the watermark cannot change anything. Jump over a long
			// silence instead of walking it.
			e.evalIdx = last
			break
		}
		e.evaluate(idx)
		e.evalIdx = idx
		for _, r := range e.rules {
			r.flushDeferred(e.evalIdx)
		}
	}
	// Calls of closed steps can no longer change a count: forget them a
	// generation at a time.
	if e.evalIdx-e.swapIdx > e.grace/e.step+1 {
		e.oldCalls, e.calls = e.calls, e.oldCalls
		for k, c := range e.calls {
			// A call of a partition running ahead may still be open.
			if c.fields.idx >= e.evalIdx {
				if _, newer := e.oldCalls[k]; !newer {
					e.oldCalls[k] = c
				}
			}
		}
		clear(e.calls)
		e.swapIdx = e.evalIdx
	}
}

// empty reports whether no rule holds a group or a parked contribution.
func (e *engine) empty() bool {
	for _, r := range e.rules {
		if len(r.groups) > 0 || len(r.deferred) > 0 {
			return false
		}
	}
	return true
}

// evaluate runs every rule on every group for the window ending at step idx
// (the event time idx*step).
func (e *engine) evaluate(idx int64) {
	at := idx * e.step
	first := len(e.out)
	for _, r := range e.rules {
		baselineKnown := r.baseSlots > 0 && idx-e.since >= r.winSlots+r.baseSlots
		// A restarted evaluator has not seen the window's calls from before
		// the restart: hold firing alerts until it has a whole window.
		warm := idx-e.since >= r.winSlots
		for key, g := range r.groups {
			m := r.step(g, idx, baselineKnown)
			e.transition(r, g, m, at, warm)
			if r.idle(g, idx) {
				delete(r.groups, key)
			}
		}
	}
	// Map order is random; notices of one step are sorted so a replay
	// yields the same sequence.
	slices.SortFunc(e.out[first:], func(a, b Notice) int {
		return cmp.Or(cmp.Compare(a.Alert.Rule, b.Alert.Rule), cmp.Compare(a.ID, b.ID))
	})
}

func (e *engine) transition(r *ruleEval, g *group, m measure, at int64, warm bool) {
	a := &g.alert
	rule := &r.rule
	switch a.state {
	case stateInactive:
		if !m.cond {
			return
		}
		a.state, a.activeAt = statePending, at
		fallthrough
	case statePending:
		if !m.cond {
			a.state = stateInactive
			return
		}
		if at-a.activeAt < int64(rule.For) {
			return
		}
		a.state, a.lastTrue, a.lastNotified = stateFiring, at, at
		a.alertID = alertID(rule.Name, g.key, a.activeAt)
		a.samples = append([]string{}, g.samples...)
		e.emit(r, g, KindFiring, m, at)
	case stateFiring:
		if m.hold {
			a.lastTrue = at
		}
		if m.hold || !warm || at-a.lastTrue < int64(rule.KeepFiringFor) {
			if rule.RepeatInterval > 0 && at-a.lastNotified >= int64(rule.RepeatInterval) {
				a.lastNotified = at
				e.emit(r, g, KindReminder, m, at)
			}
			return
		}
		e.emit(r, g, KindResolved, m, at)
		*a = alertState{}
	}
}

func (e *engine) emit(r *ruleEval, g *group, kind string, m measure, at int64) {
	state := schemas.AlertFiring
	if kind == KindResolved {
		state = schemas.AlertResolved
	}
	ev := r.alertEvent(g, state, m, at)
	e.out = append(e.out, Notice{
		ID: noticeID(ev.AlertID, kind, at), Kind: kind, At: time.Unix(0, at).UTC(), Alert: ev,
		Count: m.count, Total: m.total, Baseline: m.baseline,
	})
}

// TakeNotices returns the notices produced since the last call.
func (e *engine) TakeNotices() []Notice {
	if len(e.out) == 0 {
		return nil
	}
	out := e.out
	e.out = nil
	return out
}

// ActiveAlerts counts pending and firing alerts per rule and state name.
func (e *engine) ActiveAlerts() map[[2]string]int {
	out := map[[2]string]int{}
	for _, r := range e.rules {
		for _, g := range r.groups {
			if g.alert.state != stateInactive {
				out[[2]string{r.rule.Name, stateNames[g.alert.state]}]++
			}
		}
	}
	return out
}

// firingNotices describes the firing alerts, for notifiers that must be
// reminded of them after a restart (Alertmanager times alerts out).
func (e *engine) firingNotices() []Notice {
	var out []Notice
	for _, r := range e.rules {
		for _, g := range r.groups {
			if g.alert.state != stateFiring {
				continue
			}
			m := measure{baseline: -1}
			ev := r.alertEvent(g, schemas.AlertFiring, m, g.alert.lastNotified)
			out = append(out, Notice{ID: noticeID(ev.AlertID, KindFiring, g.alert.activeAt), Kind: KindFiring,
				At: time.Unix(0, g.alert.lastNotified).UTC(), Alert: ev, Baseline: -1})
		}
	}
	return out
}
