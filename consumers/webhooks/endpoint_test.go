package webhooks

import (
	"fmt"
	"slices"
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

// TestLowerRevisionDisplacesAnUntriedHead: when revision 1 of a call is
// queued after revision 2 (handed over concurrently), it takes the lane's
// head and revision 2 leaves the ready heap: only one entry of a call is
// ever due, so the revisions go out in order.
func TestLowerRevisionDisplacesAnUntriedHead(t *testing.T) {
	now := time.Date(2026, 2, 7, 5, 0, 0, 0, time.UTC)
	ep := &endpoint{live: map[string]*entry{}, lanes: map[string]*lane{}, br: breaker{threshold: 10, cooldown: time.Minute}}
	ev := func(id, call string, rev int, order uint64) *entry {
		return &entry{ev: &event{id: id, callKey: call, rev: rev, order: order}, nextAt: now}
	}
	ep.mu.Lock()
	// Revision 2 first, so it sits at the top of the heap (index 0) when
	// revision 1 displaces it.
	ep.enqueueLocked(ev("r2", "call-1", 2, 1))
	ep.enqueueLocked(ev("other", "call-2", 1, 2)) // another call, due as well
	ep.enqueueLocked(ev("r1", "call-1", 1, 3))
	ep.mu.Unlock()
	var got []string
	for {
		e, _ := ep.next(now)
		if e == nil {
			break
		}
		got = append(got, e.ev.id)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"other", "r1"}) {
		t.Fatalf("due at once: %v, want revision 1 of the call and the other call, not revision 2", got)
	}
}

// TestTriedHeadKeepsItsPlace: a lower revision that arrives while the
// lane's head is in flight, or failed and waits for its retry, queues
// behind it. The receiver may hold the head already; put in front, the
// lower revision would go out beside it, and the head, no longer first in
// its lane, would stay queued and be sent a second time.
func TestTriedHeadKeepsItsPlace(t *testing.T) {
	now := time.Date(2026, 2, 7, 5, 0, 0, 0, time.UTC)
	for _, retrying := range []bool{false, true} {
		t.Run(fmt.Sprintf("retrying=%v", retrying), func(t *testing.T) {
			ep := &endpoint{live: map[string]*entry{}, lanes: map[string]*lane{}, br: breaker{threshold: 10, cooldown: time.Minute}}
			ep.mu.Lock()
			ep.enqueueLocked(&entry{ev: &event{id: "r2", callKey: "call-1", rev: 2, order: 1}, nextAt: now})
			ep.mu.Unlock()
			head, _ := ep.next(now)
			if head == nil || head.ev.id != "r2" {
				t.Fatalf("first due: %v, want r2", head)
			}
			if retrying {
				ep.mu.Lock()
				head.attempts++
				ep.requeueLocked(head, now.Add(time.Minute))
				ep.mu.Unlock()
			}
			ep.mu.Lock()
			ep.enqueueLocked(&entry{ev: &event{id: "r1", callKey: "call-1", rev: 1, order: 2}, nextAt: now})
			ep.mu.Unlock()
			if e, _ := ep.next(now); e != nil {
				t.Fatalf("%s is due while r2 is in flight or waiting for its retry", e.ev.id)
			}
			at := now
			if retrying {
				at = now.Add(time.Minute)
				if e, _ := ep.next(at); e != head {
					t.Fatalf("due at the retry time: %v, want r2", e)
				}
			}
			var sent []string
			ep.mu.Lock()
			ep.removeLocked(head, at) // delivered
			ep.mu.Unlock()
			for {
				e, _ := ep.next(at)
				if e == nil {
					break
				}
				sent = append(sent, e.ev.id)
				ep.mu.Lock()
				ep.removeLocked(e, at)
				ep.mu.Unlock()
			}
			if !slices.Equal(sent, []string{"r1"}) {
				t.Fatalf("after r2 was delivered: %v, want r1 alone", sent)
			}
		})
	}
}

// TestIdleWorkersSleep: with nothing queued the delivery workers wait to
// be signalled; they do not poll. Half a second idle costs a few
// milliseconds of CPU, where a spinning worker would burn the whole time.
func TestIdleWorkersSleep(t *testing.T) {
	if cpuTime(t) == 0 {
		t.Skip("process CPU time is measured on unix only (cpu_other_test.go)")
	}
	l := newListener(t, nil)
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, Concurrency: 4})
	p := start(t, cfg, newFileStore(t), newDLQ(t))
	<-p.ready
	handle(t, p.Plugin, testEvent(1, "c", 1)) // one delivery, then idle
	eventually(t, 5*time.Second, "the delivery", func() bool { return len(l.successes()) == 1 })
	cpu0, wall0 := cpuTime(t), time.Now()
	time.Sleep(500 * time.Millisecond)
	cpu, wall := cpuTime(t)-cpu0, time.Since(wall0)
	if cpu > wall/4 {
		t.Fatalf("idle plug-in used %s of CPU in %s: a worker is polling", cpu, wall)
	}
}
