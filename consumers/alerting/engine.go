package alerting

import (
	"cmp"
	"math"
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

// engine evaluates rules on event time. It is not safe for concurrent use;
// the plug-in serialises calls. Everything but idle detection depends only
// on the order of events, so a replay gives the same notices.
type engine struct {
	step, grace int64
	idleTimeout time.Duration
	hold        time.Duration
	rules       []*ruleEval // every rule, for state and metrics
	counting    []*ruleEval // the rules that count calls (not org_paused)
	paused      []*ruleEval // org_paused rules, evaluated on the wall clock

	started  bool
	restored bool  // the watermark came from saved state
	evalIdx  int64 // the next step to evaluate: steps < evalIdx are frozen
	since    int64 // the step from which this process has seen every call
	parts    map[sourceKey]*sourceMark
	live     sourceHeap // the sources not idle, by high
	high     int64      // newest creation_time over all sources
	arrival  time.Time
	// holdUntil is the wall time before which no step is evaluated: every
	// source gets StartupHold from this process's first arrival to show up
	// before the clock moves.
	holdUntil time.Time

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
		hold:        cfg.StartupHold,
		parts:       map[sourceKey]*sourceMark{},
		calls:       map[string]callRec{},
		oldCalls:    map[string]callRec{},
	}
	for i, r := range cfg.Rules {
		re := newRuleEval(r, i, cfg.EvaluationInterval, cfg.Grace)
		e.rules = append(e.rules, re)
		if r.Kind == KindOrgPaused {
			e.paused = append(e.paused, re)
		} else {
			e.counting = append(e.counting, re)
		}
	}
	return e
}

// holding reports whether the startup hold still stands at now.
func (e *engine) holding(now time.Time) bool { return now.Before(e.holdUntil) }

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
	if e.arrival.IsZero() {
		e.holdUntil = now.Add(e.hold)
	}
	held := e.holding(now)
	if !e.started {
		e.started = true
		e.evalIdx = floorDiv(t-e.grace, e.step)
		e.since = e.evalIdx
		e.swapIdx = e.evalIdx
		e.high = t
	} else if held && !e.restored {
		// Nothing has been evaluated yet: a source whose history starts
		// earlier moves the start back instead of having its calls late.
		if first := floorDiv(t-e.grace, e.step); first < e.evalIdx {
			e.evalIdx, e.since, e.swapIdx = first, first, first
		}
	}
	// Each org is polled by the producer at its own pace (one catching up
	// while another is live), so each org on each partition is its own
	// source: a lagging org holds the watermark back instead of having its
	// calls counted as late.
	key := sourceKey{partition: partition, org: ev.Org}
	p := e.parts[key]
	if p == nil {
		p = &sourceMark{high: t, pos: -1}
		e.parts[key] = p
	}
	e.live.seen(p, now)
	e.arrival = now
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
	// Apart from the source's own high: the first call of a new source
	// may be the newest of all.
	if t > e.high {
		e.high = t
	}
	if t > p.high {
		e.live.raise(p, t)
		if !held {
			e.advance(e.watermark(now))
		}
	}
	if known && prev.fields.idx >= e.evalIdx {
		for _, r := range e.counting {
			r.contribute(&prev.fields, -1, "", e.evalIdx, held)
		}
	}
	for _, r := range e.counting {
		r.contribute(&f, 1, ev.EventID, e.evalIdx, held)
	}
	e.calls[ev.CallKey] = callRec{rev: ev.Revision, fields: f}
	return Counted
}

// watermark is the event time all live sources have passed, less grace.
// Sources silent for idleTimeout of wall time do not hold it back.
func (e *engine) watermark(now time.Time) int64 {
	low, ok := e.live.lowest(now, e.idleTimeout)
	if !ok {
		return math.MinInt64 // every source idle: none moves event time
	}
	return low - e.grace
}

// Tick lets idle partitions stop holding the watermark back and, when every
// partition is idle, moves event time on with the wall clock, so that alerts
// resolve when calls stop coming altogether. It is the only use of the wall
// clock in evaluation.
func (e *engine) Tick(now time.Time) {
	if !e.started || e.arrival.IsZero() || e.holding(now) {
		// Nothing arrived since the start: no clock to move on from. Or
		// the startup hold still waits for every source to show up.
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
	// What the startup hold parked may belong to the very next steps.
	for _, r := range e.counting {
		r.flushDeferred(e.evalIdx)
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
		for _, r := range e.counting {
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

// empty reports whether no counting rule holds a group or a parked
// contribution.
func (e *engine) empty() bool {
	for _, r := range e.counting {
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
	for _, r := range e.counting {
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
	e.sortNotices(first)
}

// sortNotices orders the notices from first on: map order is random, and
// notices of one evaluation are sorted so a replay yields the same sequence.
func (e *engine) sortNotices(first int) {
	slices.SortFunc(e.out[first:], func(a, b Notice) int {
		return cmp.Or(cmp.Compare(a.Alert.Rule, b.Alert.Rule), cmp.Compare(a.ID, b.ID))
	})
}

// ObservePaused evaluates the org_paused rules at wall time now, given the
// orgs the producer reports paused. Unlike the other rules these run on the
// wall clock: a paused org sends nothing whose event time could move.
func (e *engine) ObservePaused(now time.Time, paused map[string]bool) {
	at := now.UnixNano()
	first := len(e.out)
	for _, r := range e.paused {
		for org, on := range paused {
			if on {
				r.groupFor(&callFields{org: org})
			}
		}
		for key, g := range r.groups {
			on := paused[g.labels[LabelOrg]]
			m := measure{cond: on, hold: on, threshold: 1, baseline: -1}
			if on {
				m.value = 1
			}
			e.transition(r, g, m, at, true)
			if g.alert.state == stateInactive {
				delete(r.groups, key)
			}
		}
	}
	e.sortNotices(first)
}

func (e *engine) transition(r *ruleEval, g *group, m measure, at int64, warm bool) {
	a := &g.alert
	rule := &r.rule
	switch a.state {
	case stateInactive:
		if !m.cond {
			return
		}
		// The baseline the alert is measured against while it fires: a
		// drop or an absence would otherwise become its own baseline.
		a.state, a.activeAt, a.baseline = statePending, at, m.baseline
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
		a.value, a.threshold = m.value, m.threshold
		a.alertID = alertID(rule.Name, g.key, a.activeAt)
		a.samples = append([]string{}, g.samples...)
		e.emit(r, g, KindFiring, m, at)
	case stateFiring:
		a.value, a.threshold = m.value, m.threshold
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
			ev := r.alertEvent(g, schemas.AlertFiring, measure{}, g.alert.lastNotified)
			out = append(out, Notice{ID: noticeID(ev.AlertID, KindFiring, g.alert.activeAt), Kind: KindFiring,
				At: time.Unix(0, g.alert.lastNotified).UTC(), Alert: ev, Baseline: -1})
		}
	}
	return out
}
