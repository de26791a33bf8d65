package alerting

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/callstream/callstream/schemas"
)

// refNotice is what the reference model says one notice is.
type refNotice struct {
	kind, rule, org  string
	at               time.Duration // from t0
	count, total     int64
	baseline         float64
	value, threshold float64
}

// referenceNotices is a reference model of the counting rules (rise, drop
// and absence), written from the rules' documentation rather than from the
// engine: at every evaluation step it counts the calls of each org in the
// window and the baseline window straight from the stream, with prefix sums
// over the calls in creation order, and runs Prometheus' state machine
// (pending for `for`, firing, kept for keep_firing_for, reminders every
// repeat_interval). It assumes every call is counted, in its last
// revision (disorder within grace, revisions before their step closes) and
// the wall clock stands still, so the
// evaluation ends where the slowest org's newest call less grace is.
func referenceNotices(cfg Config, stream []schemas.CallEvent) []refNotice {
	step := cfg.EvaluationInterval
	byOrg := map[string][]schemas.CallEvent{}
	for _, ev := range stream {
		byOrg[ev.Org] = append(byOrg[ev.Org], ev)
	}
	var orgs []string
	var end time.Time
	for org, evs := range byOrg {
		orgs = append(orgs, org)
		slices.SortStableFunc(evs, func(a, b schemas.CallEvent) int { return a.CreationTime.Compare(b.CreationTime) })
		if last := evs[len(evs)-1].CreationTime; end.IsZero() || last.Before(end) {
			end = last
		}
	}
	sort.Strings(orgs)
	end = end.Add(-cfg.Grace)
	// The engine starts at the step of the first call to arrive, less grace.
	since := time.Unix(0, floorDiv(stream[0].CreationTime.Add(-cfg.Grace).UnixNano(), int64(step))*int64(step)).UTC()
	var out []refNotice
	for _, r := range cfg.Rules {
		if r.Kind == KindOrgPaused {
			continue // on the wall clock, from the producer's reports
		}
		for _, org := range orgs {
			out = append(out, referenceGroup(r, org, byOrg[org], since, end, step)...)
		}
	}
	sortRef(out)
	return out
}

// referenceGroup runs one rule over one org's calls (sorted by creation).
func referenceGroup(r Rule, org string, evs []schemas.CallEvent, since, end time.Time, step time.Duration) []refNotice {
	// scope[i], match[i]: in-scope and matching calls among the first i.
	scope, match := make([]int64, len(evs)+1), make([]int64, len(evs)+1)
	for i := range evs {
		ev := &evs[i]
		sc := len(r.Match.CallType) == 0 || slices.Contains(r.Match.CallType, ev.CallType)
		mt := sc && (len(r.Match.CallStatus) == 0 || slices.Contains(r.Match.CallStatus, ev.CallStatus))
		scope[i+1], match[i+1] = scope[i], match[i]
		if sc {
			scope[i+1]++
		}
		if mt {
			match[i+1]++
		}
	}
	before := func(t time.Time) int { // calls created before t
		return sort.Search(len(evs), func(i int) bool { return !evs[i].CreationTime.Before(t) })
	}
	win := r.Window.Minutes()
	var out []refNotice
	state, active, lastTrue, notified, frozen := "inactive", time.Time{}, time.Time{}, time.Time{}, -1.0
	for e := since.Add(step); !e.After(end); e = e.Add(step) {
		lo, hi := before(e.Add(-r.Window)), before(e)
		m, n := match[hi]-match[lo], scope[hi]-scope[lo]
		baseline := -1.0
		if r.usesBaseline() && e.Sub(since) >= r.Window+r.BaselineWindow {
			b := before(e.Add(-r.Window - r.BaselineWindow))
			baseline = float64(match[lo]-match[b]) / r.BaselineWindow.Minutes()
		}
		// A firing drop or absence is measured against the baseline it
		// went pending with, not one the drop itself keeps lowering.
		ref := baseline
		if state == "firing" {
			ref = frozen
		}
		var cond, hold bool
		var value, threshold float64
		rate := float64(m) / win
		switch r.Kind {
		case KindAbsence:
			cond = baseline >= 0 && baseline*win >= r.MinExpected && m == 0
			hold = m == 0
			value = float64(m)
			if ref >= 0 {
				threshold = ref * win
			}
		case KindDrop:
			cond = baseline >= 0 && baseline*win >= r.MinExpected && rate < r.BaselineFactor*baseline
			hold = ref >= 0 && rate < r.BaselineFactor*ref
			value = rate
			if ref >= 0 {
				threshold = r.BaselineFactor * ref
			}
		default:
			ratio := 0.0
			if n > 0 {
				ratio = float64(m) / float64(n)
			}
			hold = (r.MinCount == 0 || m >= int64(r.MinCount)) &&
				(r.MinRatio == 0 || (n >= int64(r.MinVolume) && n > 0 && ratio >= r.MinRatio))
			cond = hold
			factor := 0.0
			if r.BaselineFactor > 0 && baseline >= 0 {
				factor = r.BaselineFactor * baseline
				cond = cond && m > 0 && rate >= factor
			} else if r.BaselineFactor > 0 && r.MinCount == 0 && r.MinRatio == 0 {
				cond = false // an unknown baseline says nothing is unusual
			}
			if r.MinCount == 0 && r.MinRatio == 0 {
				hold = cond // the baseline is the only condition
			}
			switch {
			case r.MinRatio > 0:
				value, threshold = ratio, r.MinRatio
			case r.MinCount > 0:
				value, threshold = float64(m), float64(r.MinCount)
			default:
				value, threshold = rate, factor
			}
		}
		note := func(kind string) {
			out = append(out, refNotice{kind: kind, rule: r.Name, org: org, at: e.Sub(t0), count: m, total: n,
				baseline: baseline, value: value, threshold: threshold})
		}
		// A restarted engine holds firing alerts until it has seen a
		// whole window; here the start is the first call's step.
		warm := e.Sub(since) >= r.Window
		switch state {
		case "inactive", "pending":
			if !cond {
				state = "inactive"
				continue
			}
			if state == "inactive" {
				state, active, frozen = "pending", e, baseline
			}
			if e.Sub(active) >= r.For {
				state, lastTrue, notified = "firing", e, e
				note(KindFiring)
			}
		case "firing":
			if hold {
				lastTrue = e
			}
			if hold || !warm || e.Sub(lastTrue) < r.KeepFiringFor {
				if r.RepeatInterval > 0 && e.Sub(notified) >= r.RepeatInterval {
					notified = e
					note(KindReminder)
				}
				continue
			}
			state = "inactive"
			note(KindResolved)
		}
	}
	return out
}

func sortRef(ns []refNotice) {
	slices.SortStableFunc(ns, func(a, b refNotice) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.rule, b.rule), cmp.Compare(a.org, b.org), cmp.Compare(a.kind, b.kind))
	})
}

// asRef is the engine's notices in the reference model's terms and order.
func asRef(ns []Notice) []refNotice {
	out := make([]refNotice, len(ns))
	for i, n := range ns {
		out[i] = refNotice{kind: n.Kind, rule: n.Alert.Rule, org: n.Alert.Org, at: n.At.Sub(t0), count: n.Count,
			total: n.Total, baseline: n.Baseline, value: n.Alert.Value, threshold: n.Alert.Threshold}
	}
	sortRef(out)
	return out
}

// randomRule draws a valid counting rule: every condition, the pending
// period, keep_firing_for and reminders at values a step or a window
// apart, so that each decides some evaluation of a random stream.
func randomRule(rng *rand.Rand, name string) Rule {
	pick := func(vs ...time.Duration) time.Duration { return vs[rng.IntN(len(vs))] }
	r := Rule{
		Name:           name,
		Window:         pick(30*time.Second, time.Minute, 2*time.Minute, 3*time.Minute),
		BaselineWindow: pick(2*time.Minute, 5*time.Minute, 10*time.Minute),
		For:            pick(0, 10*time.Second, 30*time.Second, time.Minute),
		KeepFiringFor:  pick(0, 20*time.Second, time.Minute),
		RepeatInterval: pick(0, 30*time.Second, 2*time.Minute),
	}
	statuses := []string{schemas.StatusFailed, schemas.StatusMissed, schemas.StatusCompleted}
	r.Match.CallStatus = statuses[:1+rng.IntN(2)]
	if rng.IntN(2) == 0 {
		r.Match.CallType = []string{schemas.CallInbound}
	}
	switch rng.IntN(4) {
	case 0:
		r.Kind = KindDrop
		r.BaselineFactor = []float64{0.2, 0.5}[rng.IntN(2)]
		r.MinExpected = []float64{1, 5}[rng.IntN(2)]
	case 1:
		r.Kind = KindAbsence
		r.MinExpected = []float64{1, 3}[rng.IntN(2)]
	default:
		r.MinCount = []int{0, 2, 5, 10}[rng.IntN(4)]
		if rng.IntN(2) == 0 {
			r.MinRatio = []float64{0.2, 0.4}[rng.IntN(2)]
			r.MinVolume = []int{0, 3, 10}[rng.IntN(3)]
		}
		if rng.IntN(2) == 0 || (r.MinCount == 0 && r.MinRatio == 0) {
			r.BaselineFactor = []float64{1.5, 3}[rng.IntN(2)]
		} else {
			r.BaselineWindow = 0
		}
	}
	return r
}

// TestEngineAgreesWithReference runs random rules over random streams with
// incidents (bursts of failed or missed calls, and spells with none) and
// requires the engine's notices to be the reference model's: the same
// kind, org and evaluation, with the same count, total, baseline, value and
// threshold. Redeliveries and revisions (see deliver) must change nothing.
func TestEngineAgreesWithReference(t *testing.T) {
	fired := map[string]int{}
	for seed := uint64(1); seed <= 60; seed++ {
		rng := rand.New(rand.NewPCG(seed, 19))
		cfg := replayConfig()
		cfg.Rules = nil
		for i := range 3 {
			cfg.Rules = append(cfg.Rules, randomRule(rng, fmt.Sprintf("r%d", i)))
		}
		tr := traffic{start: t0, length: time.Duration(30+rng.IntN(30)) * time.Minute, orgs: []string{"a", "b"},
			perMinute: float64(5 + rng.IntN(40)), missed: 0.1, failed: 0.05,
			disorder: time.Duration(rng.IntN(50)) * time.Second, seed: seed}
		for range 1 + rng.IntN(3) {
			from := time.Duration(5+rng.IntN(20)) * time.Minute
			tr.incidents = append(tr.incidents, incident{org: tr.orgs[rng.IntN(2)], from: from,
				to:     from + time.Duration(1+rng.IntN(6))*time.Minute,
				status: []string{schemas.StatusFailed, schemas.StatusMissed}[rng.IntN(2)], share: []float64{0, 0.6, 0.9}[rng.IntN(3)]})
		}
		lag := []time.Duration{0, 0, time.Duration(rng.IntN(25)) * time.Minute}[rng.IntN(3)]
		stream := lagging(tr.generate(), "b", lag)
		want := referenceNotices(cfg, stream)
		got := asRef(runEngine(t, cfg, deliver(stream, cfg.Grace)))
		for _, n := range want {
			fired[n.kind+" "+kindOf(cfg, n.rule)]++
		}
		if !slices.Equal(got, want) {
			t.Errorf("seed %d, rules %+v:\n%s", seed, cfg.Rules, diffRef(got, want))
		}
	}
	// The comparison means something only if every kind of rule fired,
	// reminded and resolved in some run.
	for _, k := range []string{KindRise, KindDrop, KindAbsence} {
		for _, n := range []string{KindFiring, KindReminder, KindResolved} {
			if fired[n+" "+k] == 0 {
				t.Errorf("no %s rule sent a %s notice in any run: the streams do not exercise it (%v)", k, n, fired)
			}
		}
	}
}

// lagging delays org's calls by lag behind the others, as when the producer
// catches one org up while the others are live: the others run ahead of
// the watermark (20 minutes is beyond the ring, so their calls are parked
// and applied later). Its first call comes first, so that it holds the
// watermark back from the start (there is no startup hold here).
func lagging(stream []schemas.CallEvent, org string, lag time.Duration) []schemas.CallEvent {
	var slow, fast []schemas.CallEvent
	for _, ev := range stream {
		if ev.Org == org {
			slow = append(slow, ev)
		} else {
			fast = append(fast, ev)
		}
	}
	if len(slow) == 0 {
		return stream
	}
	out := []schemas.CallEvent{slow[0]}
	slow = slow[1:]
	for len(slow) > 0 || len(fast) > 0 {
		if len(fast) == 0 || len(slow) > 0 && slow[0].CreationTime.Add(lag).Before(fast[0].CreationTime) {
			out, slow = append(out, slow[0]), slow[1:]
		} else {
			out, fast = append(out, fast[0]), fast[1:]
		}
	}
	return out
}

// deliver is how the test delivers a stream: every tenth call twice in a
// row (a redelivery, to be counted once), and every seventh call first as
// an earlier revision with another status and type, its final revision
// following as late as it can still be counted: while every call delivered
// before it is younger than its creation plus grace, so it lands in the
// first open step as often as in a later one, and the engine must take the
// first revision's contribution back. The model counts the stream as it is.
func deliver(stream []schemas.CallEvent, grace time.Duration) []schemas.CallEvent {
	var out, pending []schemas.CallEvent
	var newest time.Time
	flush := func(upTo time.Time) {
		kept := pending[:0]
		for _, ev := range pending {
			if upTo.IsZero() || !upTo.Before(ev.CreationTime.Add(grace-time.Second)) {
				out = append(out, ev)
			} else {
				kept = append(kept, ev)
			}
		}
		pending = kept
	}
	for i, ev := range stream {
		if ev.CreationTime.After(newest) {
			newest = ev.CreationTime
		}
		flush(newest)
		switch {
		case i%7 == 3:
			early := ev
			early.CallStatus, early.CallType = schemas.StatusFailed, schemas.CallInbound
			if ev.CallStatus == schemas.StatusFailed {
				early.CallStatus = schemas.StatusCompleted
			}
			if ev.CallType == schemas.CallInbound {
				early.CallType = schemas.CallOutbound
			}
			ev.Revision = early.Revision + 1
			out = append(out, early)
			pending = append(pending, ev)
		case i%10 == 0:
			out = append(out, ev, ev)
		default:
			out = append(out, ev)
		}
	}
	flush(time.Time{})
	return out
}

func kindOf(cfg Config, rule string) string {
	for _, r := range cfg.Rules {
		if r.Name == rule {
			return cmp.Or(r.Kind, KindRise)
		}
	}
	return ""
}

// diffRef shows the first notices where the engine and the model part.
func diffRef(got, want []refNotice) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	s := fmt.Sprintf("engine %d notices, reference %d; first difference at %d:\n", len(got), len(want), i)
	for j := i; j < i+3; j++ {
		if j < len(got) {
			s += fmt.Sprintf("  engine    %+v\n", got[j])
		}
		if j < len(want) {
			s += fmt.Sprintf("  reference %+v\n", want[j])
		}
	}
	return s
}
