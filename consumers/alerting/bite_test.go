package alerting

import (
	"fmt"
	"testing"
	"time"

	"github.com/callstream/callstream/schemas"
)

// steady is one inbound call a second for org from 0 to length, with the
// status status(at) gives: a stream whose every window is known exactly.
func steady(org string, length time.Duration, status func(at time.Duration) string) []schemas.CallEvent {
	var out []schemas.CallEvent
	for at := time.Duration(0); at < length; at += time.Second {
		out = append(out, call(len(out), org, at, status(at)))
	}
	return out
}

// TestForAndKeepFiringFor pins the pending period and keep_firing_for on a
// stream whose windows are known exactly: one call a second for 20
// minutes, failed from 10:00 to 12:00. The rule counts failed calls over 1
// minute, at least 5. The window ending at E covers [E-1m, E), so it holds
// 5 failed calls first at 10:05 and last at 12:55; the evaluations every
// 10 s see the conditions hold from 10:10 to 12:50. The alert goes pending
// at 10:10 and fires at the first evaluation for after it; it resolves at
// the first evaluation keep_firing_for after 12:50 (13:00 at the soonest).
func TestForAndKeepFiringFor(t *testing.T) {
	stream := steady("o", 20*time.Minute, func(at time.Duration) string {
		if at >= 10*time.Minute && at < 12*time.Minute {
			return schemas.StatusFailed
		}
		return schemas.StatusCompleted
	})
	min := func(m, s int) time.Duration { return time.Duration(m)*time.Minute + time.Duration(s)*time.Second }
	tests := []struct {
		forD, keep      time.Duration
		fire, resolveAt time.Duration
	}{
		{0, 0, min(10, 10), min(13, 0)},
		{30 * time.Second, 0, min(10, 40), min(13, 0)},
		{0, time.Minute, min(10, 10), min(13, 50)},
		{30 * time.Second, time.Minute, min(10, 40), min(13, 50)},
		{2 * time.Minute, 25 * time.Second, min(12, 10), min(13, 20)},
		{3 * time.Minute, 0, 0, 0}, // the conditions hold 2m40s: never fires
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("for=%s keep=%s", tt.forD, tt.keep), func(t *testing.T) {
			cfg := replayConfig()
			cfg.Rules = []Rule{{Name: "failed", Match: Match{CallStatus: []string{schemas.StatusFailed}}, Window: time.Minute,
				MinCount: 5, For: tt.forD, KeepFiringFor: tt.keep}}
			got := runEngine(t, cfg, stream)
			if tt.fire == 0 {
				if len(got) != 0 {
					t.Fatalf("got %v, want nothing", kinds(got))
				}
				return
			}
			if len(got) != 2 || got[0].Kind != KindFiring || got[1].Kind != KindResolved {
				t.Fatalf("got %v, want a firing and a resolution", kinds(got))
			}
			if at := got[0].At.Sub(t0); at != tt.fire {
				t.Errorf("fired at %s, want %s", at, tt.fire)
			}
			if at := got[0].Alert.StartsAt.Sub(t0); at != min(10, 10) {
				t.Errorf("starts_at %s, want 10m10s (when it went pending)", at)
			}
			if at := got[1].At.Sub(t0); at != tt.resolveAt {
				t.Errorf("resolved at %s, want %s", at, tt.resolveAt)
			}
		})
	}
}

// TestBaselineFactorDecides: an org where a quarter of the calls are
// always missed (one inbound call a second, a 15/min missed rate). For 20
// minutes the share rises: to 60% (36/min, 2.4 times the baseline) the
// rise is not unusual enough and nothing fires, although min_count and
// min_ratio hold throughout; to 100% (60/min, 4 times) it fires, and only
// once the window's rate reaches 3 times the baseline, which min_ratio
// alone would have passed a minute earlier.
func TestBaselineFactorDecides(t *testing.T) {
	rule := DefaultRules()[0] // missed-call-spike: 3m window, 3 times the hour before
	rise := func(share int) []schemas.CallEvent {
		return steady("o", 3*time.Hour, func(at time.Duration) string {
			s := int(at / time.Second)
			if at >= 100*time.Minute && at < 120*time.Minute {
				if s%5 < share {
					return schemas.StatusMissed
				}
				return schemas.StatusCompleted
			}
			if s%4 == 0 {
				return schemas.StatusMissed
			}
			return schemas.StatusCompleted
		})
	}
	run := func(factor float64, stream []schemas.CallEvent) []Notice {
		cfg := replayConfig()
		r := rule
		r.BaselineFactor = factor
		cfg.Rules = []Rule{r}
		return runEngine(t, cfg, stream)
	}
	// 60%: min_count and min_ratio hold for 20 minutes; the baseline says no.
	if got := run(rule.BaselineFactor, rise(3)); len(got) != 0 {
		t.Fatalf("a rise to 2.4 times the baseline fired: %v", kinds(got))
	}
	if got := run(0, rise(3)); len(got) == 0 {
		t.Fatal("without the baseline the 60% rise does not fire: the case does not test the baseline")
	}
	// 100%: the window [E-3m, E) holds 2 minutes of the rise, 45/min, at
	// E = 102:00; min_ratio alone is met from 101:00.
	got := run(rule.BaselineFactor, rise(5))
	if len(got) != 2 || got[0].Kind != KindFiring {
		t.Fatalf("a rise to 4 times the baseline: %v, want it to fire and resolve", kinds(got))
	}
	if at := got[0].Alert.StartsAt.Sub(t0); at != 102*time.Minute {
		t.Errorf("the 4-fold rise went pending at %s, want 1h42m (3 times the baseline reached)", at)
	}
	if b := got[0].Baseline; b != 15 {
		t.Errorf("baseline %v/min, want 15 (a quarter of 60 calls a minute)", b)
	}
}
