package webhooks

import (
	"testing"
	"time"
)

// TestBreaker walks the breaker through its states: closed below the
// threshold, open for the cooldown once it is reached, then one probe at a
// time, closed again by a success or reopened by a failure.
func TestBreaker(t *testing.T) {
	t0 := time.Date(2026, 2, 7, 5, 0, 0, 0, time.UTC)
	b := breaker{threshold: 3, cooldown: time.Minute}
	step := func(what string, wantOK bool, wantWait time.Duration, wantOpen bool, now time.Time) {
		t.Helper()
		ok, wait := b.allow(now)
		if ok != wantOK || wait != wantWait || b.open() != wantOpen {
			t.Fatalf("%s: allow = %v, %s, open = %v; want %v, %s, %v", what, ok, wait, b.open(), wantOK, wantWait, wantOpen)
		}
	}
	b.record(false, t0)
	b.record(false, t0)
	step("two failures of three", true, 0, false, t0)
	b.record(false, t0)
	step("third failure opens", false, time.Minute, true, t0)
	step("still open", false, time.Second, true, t0.Add(59*time.Second))
	step("cooldown over: a probe", true, 0, true, t0.Add(time.Minute))
	step("one probe at a time", false, 0, true, t0.Add(time.Minute))
	b.record(false, t0.Add(2*time.Minute))
	step("failed probe reopens", false, time.Minute, true, t0.Add(2*time.Minute))
	step("next probe", true, 0, true, t0.Add(3*time.Minute))
	b.record(true, t0.Add(3*time.Minute))
	step("successful probe closes", true, 0, false, t0.Add(3*time.Minute))
	step("closed lets every attempt through", true, 0, false, t0.Add(3*time.Minute))
}
