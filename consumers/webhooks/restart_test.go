package webhooks

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/callstream/callstream/schemas"
)

// Pending retries survive a crash: what Handle acknowledged is delivered by
// the next process, and what keeps failing ends in the DLQ, nothing lost.
//
// The first process queues events for two endpoints that both fail; its
// retries wait an hour. A second batch is handled and the store frozen the
// moment the last Handle returns, so the next process sees only what was
// durable when Handle acknowledged (a Handle that returned before its
// events were saved loses them here). The second process runs with the
// clock two hours on: "later" now succeeds and must get every event once,
// "doomed" still fails and every event must reach the DLQ.
func TestRestartDeliversPendingRetries(t *testing.T) {
	// "later" succeeds only for the second process (an X-Phase header the
	// config sets), so a first-process request still being served while
	// that process stops cannot count as a success.
	later := newListener(t, func(_ int, r *http.Request, _ []byte) int {
		if r.Header.Get("X-Phase") == "2" {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	doomed := newListener(t, func(int, *http.Request, []byte) int { return http.StatusInternalServerError })
	eps := []EndpointConfig{
		{Name: "later", URL: later.srv.URL, Secrets: Secrets{newSecret(t)}, Headers: map[string]string{"X-Phase": "1"}},
		{Name: "doomed", URL: doomed.srv.URL, Secrets: Secrets{newSecret(t)}},
	}
	cfg := testConfig(eps...)
	cfg.RetrySchedule = []time.Duration{time.Millisecond, time.Hour, time.Hour}
	cfg.BreakerFailures = 1 << 20
	store := newFileStore(t)
	d := newDLQ(t)

	const batchA, batchB = 100, 50
	p1 := start(t, cfg, store, d)
	handleAll(t, p1.Plugin, 0, batchA)
	// Batch A reaches its hour-long wait at both endpoints.
	eventually(t, 10*time.Second, "two attempts per event", func() bool {
		return len(later.requests()) >= 2*batchA && len(doomed.requests()) >= 2*batchA
	})
	time.Sleep(50 * time.Millisecond) // let the attempt counts reach the store
	handleAll(t, p1.Plugin, batchA, batchB)
	store.frozen.Store(true) // crash: nothing after this point is saved
	p1.stop(t)
	if n := len(later.successes()); n != 0 {
		t.Fatalf("%d successes before the restart; the endpoint was failing", n)
	}

	cfg2 := cfg
	cfg2.Endpoints = slices.Clone(cfg.Endpoints)
	cfg2.Endpoints[0].Headers = map[string]string{"X-Phase": "2"}
	cfg2.RetrySchedule = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	store.frozen.Store(false)
	p2 := start(t, cfg2, store, d, func(p *Plugin) {
		p.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	})
	eventually(t, 20*time.Second, "every event delivered and every doomed one in the DLQ", func() bool {
		return len(later.successes()) == batchA+batchB && len(d.messages()) == batchA+batchB
	})
	p2.stop(t)

	for i := range batchA + batchB {
		id := testEvent(i, "", 1).EventID
		if n := later.successes()[id]; n != 1 {
			t.Errorf("event %d delivered %d times as a success, want 1", i, n)
		}
	}
	seen := map[string]bool{}
	for _, m := range d.messages() {
		if ep := m.Metadata.Get(schemas.DLQEndpointMetadata); ep != "doomed" {
			t.Fatalf("DLQ message for endpoint %q", ep)
		}
		if r := m.Metadata.Get(schemas.DLQReasonMetadata); !contains(r, "last status 500") {
			t.Fatalf("DLQ reason %q lacks the last status", r)
		}
		seen[string(m.Payload)] = true
	}
	if len(seen) != batchA+batchB {
		t.Fatalf("%d distinct events in the DLQ, want %d", len(seen), batchA+batchB)
	}
	// Batch A was tried twice before the crash; the saved attempt count
	// means only the rest of the schedule (two more) runs after it.
	perID := map[string]int{}
	for _, r := range doomed.requests() {
		perID[r.header.Get(HeaderID)]++
	}
	if n := perID[testEvent(0, "", 1).EventID]; n != 4 {
		t.Errorf("doomed endpoint saw %d attempts of event 0, want 4 (1 + len(schedule)), attempts count across restarts", n)
	}
}

func handleAll(t *testing.T, p *Plugin, from, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := from; i < from+n; i++ {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			errs <- p.Handle(ctx, delivery(t, testEvent(i, "call-"+strconv.Itoa(i), 1)))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Handle: %v", err)
		}
	}
}

// Graceful shutdown keeps queued events too (not only crashes).
func TestGracefulRestartKeepsQueue(t *testing.T) {
	release := make(chan struct{})
	l := newListener(t, func(int, *http.Request, []byte) int {
		select {
		case <-release:
			return http.StatusOK
		default:
			return 0 // hang until the sender gives up
		}
	})
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, Concurrency: 2})
	store := newFileStore(t)
	d := newDLQ(t)
	p1 := start(t, cfg, store, d)
	handleAll(t, p1.Plugin, 0, 20)
	p1.stop(t)
	close(release)
	store.loads.Store(0)
	p2 := start(t, cfg, store, d)
	eventually(t, 10*time.Second, "all 20 delivered", func() bool { return len(l.successes()) == 20 })
	p2.stop(t)
	// A graceful stop ends with a snapshot: the restart loads its header,
	// its one part and one missing log key, nothing more.
	if n := store.loads.Load(); n != 3 {
		t.Fatalf("restart after a graceful stop made %d loads, want 3", n)
	}
}

// A retry scheduled for later stays scheduled across a restart: the new
// process does not retry at once what the schedule says to wait for.
func TestRestartKeepsTheRetryTime(t *testing.T) {
	l, cfg, store, p := startRetryingHourly(t)
	ev := testEvent(1, "c", 1)
	handle(t, p.Plugin, ev)
	waitRetryPending(t, p.Plugin, ev.EventID)
	stopFlushed(t, p)

	p2 := start(t, cfg, store, newDLQ(t))
	eventually(t, 5*time.Second, "the entry recovered", func() bool { return memoryHeld(p2.Plugin, "a") == 1 })
	time.Sleep(200 * time.Millisecond)
	if n := len(l.requests()); n != 1 {
		t.Fatalf("%d attempts: the restart retried at once an entry due in an hour", n)
	}
}

// TestRestartKeepsTheLaneOrder: a call's queue comes back from the store in
// the order it had. A lower revision that arrived while the head waited for
// its retry stays behind it (see enqueueLocked), as it would have without
// the restart.
func TestRestartKeepsTheLaneOrder(t *testing.T) {
	_, cfg, store, p := startRetryingHourly(t)
	rev2, rev1 := testEvent(1, "c", 2), testEvent(2, "c", 1)
	handle(t, p.Plugin, rev2)
	waitRetryPending(t, p.Plugin, rev2.EventID)
	handle(t, p.Plugin, rev1)
	want := []string{rev2.EventID, rev1.EventID}
	if got := laneIDs(p.Plugin, "a", "c"); !slices.Equal(got, want) {
		t.Fatalf("lane before the restart: %v, want %v", got, want)
	}
	stopFlushed(t, p)

	p2 := start(t, cfg, store, newDLQ(t))
	eventually(t, 5*time.Second, "the entries recovered", func() bool { return memoryHeld(p2.Plugin, "a") == 2 })
	if got := laneIDs(p2.Plugin, "a", "c"); !slices.Equal(got, want) {
		t.Fatalf("lane after the restart: %v, want %v as before it", got, want)
	}
}

// startRetryingHourly starts endpoint a, whose receiver refuses every
// attempt, with one retry an hour after the first attempt.
func startRetryingHourly(t *testing.T) (*listener, Config, *fileStore, *started) {
	t.Helper()
	l := newListener(t, func(int, *http.Request, []byte) int { return http.StatusInternalServerError })
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
	cfg.RetrySchedule = []time.Duration{time.Hour}
	store := newFileStore(t)
	return l, cfg, store, start(t, cfg, store, newDLQ(t))
}

// waitRetryPending waits until the event id has failed once at endpoint a
// and waits for its retry.
func waitRetryPending(t *testing.T, p *Plugin, id string) {
	t.Helper()
	eventually(t, 5*time.Second, "the retry scheduled", func() bool {
		ep := p.all["a"]
		ep.mu.Lock()
		defer ep.mu.Unlock()
		e := ep.live[id]
		return e != nil && e.attempts == 1 && !e.inFlight
	})
}

// stopFlushed waits for the store to hold everything p journalled, then
// stops it.
func stopFlushed(t *testing.T, p *started) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.journal.pending().wait(ctx); err != nil {
		t.Fatal(err)
	}
	p.stop(t)
	p.Close()
}

// laneIDs lists the event ids queued for call at endpoint name, head first.
func laneIDs(p *Plugin, name, call string) []string {
	ep := p.all[name]
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var ids []string
	if l := ep.lanes[call]; l != nil {
		for _, e := range l.q {
			ids = append(ids, e.ev.id)
		}
	}
	return ids
}

// TestInstancesKeepTheirOwnQueues: two webhooks instances sharing one
// state store (Kafka mode) keep separate queues, so neither takes over,
// or overwrites, the other's undelivered events.
func TestInstancesKeepTheirOwnQueues(t *testing.T) {
	hanging := newListener(t, func(int, *http.Request, []byte) int { return 0 })
	store := newFileStore(t)
	cfg := func(instance string) Config {
		c := testConfig(EndpointConfig{Name: "a", URL: hanging.srv.URL, Secrets: Secrets{newSecret(t)}, Timeout: time.Minute})
		c.Instance = instance
		return c
	}
	p1 := start(t, cfg("w1"), store, newDLQ(t))
	handle(t, p1.Plugin, testEvent(1, "c1", 1))
	p1.stop(t)
	p1.Close()

	p2 := start(t, cfg("w2"), store, newDLQ(t))
	<-p2.ready
	if m := memoryHeld(p2.Plugin, "a"); m != 0 {
		t.Fatalf("instance w2 recovered %d entries of instance w1", m)
	}
	p2.stop(t)
	p2.Close()

	p1again := start(t, cfg("w1"), store, newDLQ(t))
	eventually(t, 5*time.Second, "w1's entry recovered", func() bool { return memoryHeld(p1again.Plugin, "a") == 1 })
}
