package alerting

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// stateVersion is bumped when the saved state's shape changes incompatibly.
const stateVersion = 1

// savedState is what survives a restart: the evaluated watermark, every
// pending or firing alert, and the outbox of notices not yet fully handed
// on. It is small: one entry per active alert, not per group.
type savedState struct {
	Version   int          `json:"version"`
	Watermark *time.Time   `json:"watermark,omitempty"`
	Alerts    []savedAlert `json:"alerts"`
	Outbox    []outboxItem `json:"outbox"`
}

type savedAlert struct {
	Rule         string            `json:"rule"`
	Group        map[string]string `json:"group"`
	State        string            `json:"state"`
	ActiveAt     time.Time         `json:"active_at"`
	LastTrue     time.Time         `json:"last_true"`
	LastNotified time.Time         `json:"last_notified"`
	AlertID      string            `json:"alert_id,omitempty"`
	Samples      []string          `json:"samples,omitempty"`
	// Baseline is the rate a drop or absence alert is held against (-1
	// unknown); absent in states saved before drop and absence rules.
	Baseline float64 `json:"baseline"`
}

// outboxItem is a notice and the destinations that have not confirmed it:
// "topic" for the alerts topic and one entry per notifier.
type outboxItem struct {
	Notice  Notice   `json:"notice"`
	Pending []string `json:"pending"`
}

// snapshot captures the engine's durable part. Alerts are sorted so equal
// states encode to equal bytes.
func (e *engine) snapshot() savedState {
	s := savedState{Version: stateVersion, Alerts: []savedAlert{}}
	if e.started {
		wm := e.Watermark()
		s.Watermark = &wm
	}
	for _, r := range e.rules {
		for _, g := range r.groups {
			a := &g.alert
			if a.state == stateInactive {
				continue
			}
			s.Alerts = append(s.Alerts, savedAlert{
				Rule: r.rule.Name, Group: g.labels, State: stateNames[a.state],
				ActiveAt: time.Unix(0, a.activeAt).UTC(), LastTrue: time.Unix(0, a.lastTrue).UTC(),
				LastNotified: time.Unix(0, a.lastNotified).UTC(), AlertID: a.alertID, Samples: a.samples,
				Baseline: a.baseline,
			})
		}
	}
	slices.SortFunc(s.Alerts, func(a, b savedAlert) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(groupKeyOf(a.Group), groupKeyOf(b.Group)))
	})
	return s
}

func groupKeyOf(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := ""
	for _, k := range keys {
		out += k + "=" + labels[k] + "\x1f"
	}
	return out
}

// restore loads a saved state into a fresh engine. Alerts of rules no longer
// configured are returned by name so the caller can log them; they are
// dropped. The watermark restarts where it was: calls older than it are late,
// so a redelivered backlog cannot fire an alert a second time.
func (e *engine) restore(s savedState) (dropped []string, err error) {
	if s.Version != stateVersion {
		return nil, fmt.Errorf("saved alerting state has version %d, want %d", s.Version, stateVersion)
	}
	if s.Watermark != nil {
		e.started, e.restored = true, true
		e.evalIdx = floorDiv(s.Watermark.UnixNano(), e.step)
		e.since, e.swapIdx = e.evalIdx, e.evalIdx
		e.high = e.evalIdx*e.step + e.grace
	}
	byName := map[string]*ruleEval{}
	for _, r := range e.rules {
		byName[r.rule.Name] = r
	}
	for _, a := range s.Alerts {
		r := byName[a.Rule]
		if r == nil {
			dropped = append(dropped, a.Rule)
			continue
		}
		f := callFields{org: a.Group[LabelOrg], src: a.Group[LabelSourceNumber], dst: a.Group[LabelDestinationNumber]}
		g := r.groupFor(&f)
		st := stateInactive
		switch a.State {
		case "pending":
			st = statePending
		case "firing":
			st = stateFiring
		default:
			return dropped, fmt.Errorf("saved alert of rule %q has unknown state %q", a.Rule, a.State)
		}
		g.alert = alertState{
			state: st, activeAt: a.ActiveAt.UnixNano(), lastTrue: a.LastTrue.UnixNano(),
			lastNotified: a.LastNotified.UnixNano(), alertID: a.AlertID, samples: a.Samples,
			baseline: a.Baseline,
		}
	}
	return dropped, nil
}

func encodeState(s savedState) ([]byte, error) {
	data, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode alerting state: %w", err)
	}
	return data, nil
}

func decodeState(data []byte) (savedState, error) {
	var s savedState
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("decode alerting state: %w", err)
	}
	return s, nil
}
