package alerting

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/callstream/callstream/schemas"
)

// Alert states inside the evaluator. Only firing and resolved are published;
// resolved is a transition back to inactive.
const (
	stateInactive uint8 = iota
	statePending
	stateFiring
)

var stateNames = [...]string{"inactive", "pending", "firing"}

// idNamespace makes alert and notification ids deterministic UUIDv5s.
var idNamespace = uuid.MustParse("4f6c1d0e-6a43-5b8e-9a8a-3c1f0d2e7b11")

// maxSamples bounds the sample event ids carried by an alert.
const maxSamples = 10

// futureSlack is how many steps beyond the grace period a partition may run
// ahead of the watermark before its calls are parked in the deferred list.
const futureSlack = 64

// slot is one evaluation step's counts for one group. idx tells which step
// the slot currently holds: a ring slot left over from an older step reads as
// zero.
type slot struct {
	idx          int64
	match, total int32
}

// group is one rule applied to one set of group-label values.
type group struct {
	key    string
	labels map[string]string
	ring   []slot
	// Running sums over the window and the baseline window, updated once per
	// step: past slots never change (late calls are not counted), so the sums
	// stay exact.
	winMatch, winTotal, baseMatch int64
	lastIdx                       int64 // newest step holding a call
	samples                       []string

	alert alertState
}

// alertState is the Prometheus-style state of one alert.
type alertState struct {
	state        uint8
	activeAt     int64 // when it went pending (the alert's starts_at)
	lastTrue     int64 // the last evaluation where the conditions held
	lastNotified int64 // the firing or the last reminder
	alertID      string
	samples      []string
	// baseline is the baseline rate when the alert went pending, -1 when
	// unknown: drop and absence alerts are held against it, not against a
	// baseline the drop itself keeps lowering.
	baseline float64
	// value and threshold are those of the latest evaluation, for metrics.
	value, threshold float64
}

// deferredObs is a contribution to a step too far ahead of the watermark to
// fit a group's ring yet.
type deferredObs struct {
	fields  callFields
	delta   int32
	eventID string
}

// ruleEval holds a compiled rule and its groups.
type ruleEval struct {
	rule       Rule
	index      int
	labels     []string
	statuses   []string
	types      []string
	reasons    []string
	numbers    map[string]bool
	winSlots   int64
	baseSlots  int64
	ringSize   int64
	futureSize int64
	groups     map[string]*group
	deferred   []deferredObs
	// deferredSorted says deferred is in step order (stable: arrival order
	// within a step, so a revision's removal follows its addition).
	deferredSorted bool
}

// callFields are the parts of a call a rule looks at. They are remembered for
// calls whose step is still open, so that a later revision can replace the
// earlier one's contribution.
type callFields struct {
	idx                      int64
	org, src, dst, typ, stat string
	reason                   string
}

func newRuleEval(r Rule, index int, step, grace time.Duration) *ruleEval {
	re := &ruleEval{
		rule:     r,
		index:    index,
		labels:   r.groupLabels(),
		statuses: r.Match.CallStatus,
		types:    r.Match.CallType,
		reasons:  r.Match.EndReason,
		winSlots: int64(r.Window / step),
		groups:   map[string]*group{},
	}
	if len(r.Match.Numbers) > 0 {
		re.numbers = map[string]bool{}
		for _, n := range r.Match.Numbers {
			re.numbers[n] = true
		}
	}
	if r.usesBaseline() {
		re.baseSlots = int64(r.BaselineWindow / step)
	}
	if r.Kind == KindOrgPaused {
		// Counts nothing: its groups need no ring.
		return re
	}
	re.futureSize = int64(grace/step) + 2 + futureSlack
	re.ringSize = re.winSlots + re.baseSlots + re.futureSize
	return re
}

// inScope reports whether the call belongs to the calls the rule looks at
// (the ratio's denominator).
func (r *ruleEval) inScope(f *callFields) bool {
	if len(r.types) > 0 && !slices.Contains(r.types, f.typ) {
		return false
	}
	if r.numbers != nil && !r.numbers[f.src] && !r.numbers[f.dst] {
		return false
	}
	return true
}

// matches reports whether an in-scope call counts towards the rule.
func (r *ruleEval) matches(f *callFields) bool {
	if len(r.statuses) > 0 && !slices.Contains(r.statuses, f.stat) {
		return false
	}
	return len(r.reasons) == 0 || slices.Contains(r.reasons, f.reason)
}

func (r *ruleEval) groupKey(f *callFields) string {
	if len(r.labels) == 1 {
		return f.org
	}
	var b strings.Builder
	b.WriteString(f.org)
	for _, l := range r.labels[1:] {
		b.WriteByte(0x1f)
		b.WriteString(labelValue(f, l))
	}
	return b.String()
}

func labelValue(f *callFields, label string) string {
	switch label {
	case LabelSourceNumber:
		return f.src
	case LabelDestinationNumber:
		return f.dst
	default:
		return f.org
	}
}

func (r *ruleEval) newGroup(key string, labels map[string]string) *group {
	g := &group{key: key, labels: labels, ring: make([]slot, r.ringSize), lastIdx: -1 << 62}
	r.groups[key] = g
	return g
}

func (r *ruleEval) groupFor(f *callFields) *group {
	key := r.groupKey(f)
	if g := r.groups[key]; g != nil {
		return g
	}
	labels := make(map[string]string, len(r.labels))
	for _, l := range r.labels {
		labels[l] = labelValue(f, l)
	}
	return r.newGroup(key, labels)
}

// contribute adds (delta 1) or removes (delta -1) a call's contribution to
// its step. evalIdx is the first step not yet evaluated. During the
// startup hold (held) every contribution is parked: the start may still
// move back, and the rings are laid out from it.
func (r *ruleEval) contribute(f *callFields, delta int32, eventID string, evalIdx int64, held bool) {
	if !r.inScope(f) {
		return
	}
	if held || f.idx >= evalIdx+r.futureSize {
		if n := len(r.deferred); n == 0 {
			r.deferredSorted = true
		} else if r.deferred[n-1].fields.idx > f.idx {
			r.deferredSorted = false
		}
		r.deferred = append(r.deferred, deferredObs{fields: *f, delta: delta, eventID: eventID})
		return
	}
	r.apply(f, delta, eventID)
}

func (r *ruleEval) apply(f *callFields, delta int32, eventID string) {
	matched := r.matches(f)
	g := r.groupFor(f)
	s := &g.ring[mod(f.idx, r.ringSize)]
	if s.idx != f.idx {
		*s = slot{idx: f.idx}
	}
	s.total += delta
	if matched {
		s.match += delta
		if delta > 0 && eventID != "" {
			if len(g.samples) == maxSamples {
				copy(g.samples, g.samples[1:])
				g.samples = g.samples[:maxSamples-1]
			}
			g.samples = append(g.samples, eventID)
		}
	}
	if f.idx > g.lastIdx {
		g.lastIdx = f.idx
	}
}

// flushDeferred applies the parked contributions that now fit, in step
// order and, within a step, in arrival order. Sorting once and taking a
// prefix keeps a large backlog (the startup hold parks a whole catch-up)
// linear instead of walking it at every step.
func (r *ruleEval) flushDeferred(evalIdx int64) {
	if len(r.deferred) == 0 {
		return
	}
	if !r.deferredSorted {
		slices.SortStableFunc(r.deferred, func(a, b deferredObs) int { return cmp.Compare(a.fields.idx, b.fields.idx) })
		r.deferredSorted = true
	}
	n := 0
	for n < len(r.deferred) && r.deferred[n].fields.idx < evalIdx+r.futureSize {
		d := &r.deferred[n]
		r.apply(&d.fields, d.delta, d.eventID)
		n++
	}
	if n == 0 {
		return
	}
	rest := copy(r.deferred, r.deferred[n:])
	clear(r.deferred[rest:])
	r.deferred = r.deferred[:rest]
}

func (g *group) at(idx, size int64) slot {
	s := g.ring[mod(idx, size)]
	if s.idx != idx {
		return slot{}
	}
	return s
}

func mod(a, n int64) int64 {
	m := a % n
	if m < 0 {
		m += n
	}
	return m
}

// measure is what one evaluation of one group found.
type measure struct {
	cond bool
	// hold is what keeps a firing alert firing: cond without the baseline
	// factor for a rise (a sustained rise would soon become its own
	// baseline and resolve while calls still fail), and for a drop or an
	// absence the condition against the baseline frozen when the alert
	// went pending.
	hold             bool
	value, threshold float64
	count, total     int64
	baseline         float64 // baseline matching calls per minute, -1 when unknown
}

// step slides the group's sums to cover the window ending at step idx
// (exclusive) and checks the conditions. baselineKnown says whether the
// evaluator has seen a whole baseline window of history.
func (r *ruleEval) step(g *group, idx int64, baselineKnown bool) measure {
	n := r.ringSize
	newest := g.at(idx-1, n)
	leaving := g.at(idx-1-r.winSlots, n)
	g.winMatch += int64(newest.match) - int64(leaving.match)
	g.winTotal += int64(newest.total) - int64(leaving.total)
	if r.baseSlots > 0 {
		oldest := g.at(idx-1-r.winSlots-r.baseSlots, n)
		g.baseMatch += int64(leaving.match) - int64(oldest.match)
	}
	m := measure{count: g.winMatch, total: g.winTotal, baseline: -1}
	if r.baseSlots > 0 && baselineKnown {
		m.baseline = float64(g.baseMatch) / r.rule.BaselineWindow.Minutes()
	}
	switch r.rule.Kind {
	case KindAbsence:
		r.absence(g, &m)
	case KindDrop:
		r.drop(g, &m)
	default:
		r.rise(g, &m)
	}
	return m
}

// rise checks min_count, min_ratio and baseline_factor (a rise above it).
func (r *ruleEval) rise(g *group, m *measure) {
	rule := &r.rule
	m.cond, m.hold = true, true
	if rule.MinCount > 0 && g.winMatch < int64(rule.MinCount) {
		m.cond, m.hold = false, false
	}
	ratio := 0.0
	if g.winTotal > 0 {
		ratio = float64(g.winMatch) / float64(g.winTotal)
	}
	if rule.MinRatio > 0 && (g.winTotal < int64(rule.MinVolume) || g.winTotal == 0 || ratio < rule.MinRatio) {
		m.cond, m.hold = false, false
	}
	rate := float64(g.winMatch) / rule.Window.Minutes()
	threshold := 0.0
	switch {
	case rule.BaselineFactor > 0 && m.baseline >= 0:
		threshold = rule.BaselineFactor * m.baseline
		// A zero baseline makes any matching call a rise; the other
		// conditions (min_count above all) are what guard against noise.
		if g.winMatch == 0 || rate < threshold {
			m.cond = false
		}
	case rule.BaselineFactor > 0 && rule.MinCount == 0 && rule.MinRatio == 0:
		// The baseline is not known yet (a whole baseline window of
		// history not seen) and it is the rule's only condition: nothing
		// says the window is unusual. Without this, such a rule fired on
		// every group at the start, empty windows included.
		m.cond = false
	}
	if rule.MinCount == 0 && rule.MinRatio == 0 {
		m.hold = m.cond
	}
	switch {
	case rule.MinRatio > 0:
		m.value, m.threshold = ratio, rule.MinRatio
	case rule.MinCount > 0:
		m.value, m.threshold = float64(g.winMatch), float64(rule.MinCount)
	default:
		m.value, m.threshold = rate, threshold
	}
}

// frozenBaseline is the baseline a firing alert is held against: the one
// it went pending with.
func frozenBaseline(g *group, m *measure) float64 {
	if g.alert.state == stateFiring {
		return g.alert.baseline
	}
	return m.baseline
}

// absence: no matching call in the window while the baseline expects at
// least min_expected of them. Value is the window's count, threshold the
// count the baseline expects.
func (r *ruleEval) absence(g *group, m *measure) {
	rule := &r.rule
	win := rule.Window.Minutes()
	m.value = float64(g.winMatch)
	if ref := frozenBaseline(g, m); ref >= 0 {
		m.threshold = ref * win
	}
	m.cond = m.baseline >= 0 && m.baseline*win >= rule.MinExpected && g.winMatch == 0
	m.hold = g.winMatch == 0
}

// drop: the matching rate in the window is below baseline_factor times the
// baseline rate, while the baseline expects at least min_expected calls.
// Value is the rate per minute, threshold factor times the baseline rate.
func (r *ruleEval) drop(g *group, m *measure) {
	rule := &r.rule
	win := rule.Window.Minutes()
	rate := float64(g.winMatch) / win
	m.value = rate
	ref := frozenBaseline(g, m)
	if ref >= 0 {
		m.threshold = rule.BaselineFactor * ref
	}
	m.cond = m.baseline >= 0 && m.baseline*win >= rule.MinExpected && rate < rule.BaselineFactor*m.baseline
	m.hold = ref >= 0 && rate < rule.BaselineFactor*ref
}

// idle reports whether a group holds nothing worth keeping at step idx.
func (r *ruleEval) idle(g *group, idx int64) bool {
	return g.alert.state == stateInactive && g.winTotal == 0 && g.baseMatch == 0 &&
		g.lastIdx < idx-r.winSlots-r.baseSlots
}

func alertID(rule, key string, activeAt int64) string {
	return uuid.NewSHA1(idNamespace, []byte(rule+"\x00"+key+"\x00"+time.Unix(0, activeAt).UTC().Format(time.RFC3339Nano))).String()
}

func noticeID(alertID, kind string, at int64) string {
	return uuid.NewSHA1(idNamespace, []byte(alertID+"\x00"+kind+"\x00"+time.Unix(0, at).UTC().Format(time.RFC3339Nano))).String()
}

func (r *ruleEval) alertEvent(g *group, state string, m measure, at int64) schemas.AlertEvent {
	ev := schemas.AlertEvent{
		AlertID:        g.alert.alertID,
		Rule:           r.rule.Name,
		Org:            g.labels[LabelOrg],
		Group:          g.labels,
		State:          state,
		StartsAt:       time.Unix(0, g.alert.activeAt).UTC(),
		Value:          m.value,
		Threshold:      m.threshold,
		Window:         r.rule.Window.String(),
		SampleEventIDs: append([]string{}, g.alert.samples...),
		Labels:         r.rule.Labels,
		Annotations:    r.rule.Annotations,
	}
	if state == schemas.AlertResolved {
		end := time.Unix(0, at).UTC()
		ev.EndsAt = &end
	}
	return ev
}
