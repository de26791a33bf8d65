package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// batchOf is events i in [from, from+n), calls of three revisions each
// (call-<i/3>, revisions 1 to 3), as deliveries.
func batchOf(t testing.TB, from, n int) []consumers.Delivery {
	var out []consumers.Delivery
	for i := from; i < from+n; i++ {
		out = append(out, delivery(t, testEvent(i, "call-"+strconv.Itoa(i/3), i%3+1)))
	}
	return out
}

func handleBatch(t testing.TB, p *Plugin, batch []consumers.Delivery) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.HandleBatch(ctx, batch); err != nil {
		t.Fatalf("HandleBatch: %v", err)
	}
}

// memoryHeld is how many entries an endpoint holds in memory.
func memoryHeld(p *Plugin, name string) int {
	ep := p.all[name]
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return len(ep.live)
}

// A full queue spills instead of blocking: HandleBatch returns at once for
// a hanging endpoint with a queue of 3, memory holds no more than the
// queue, the rest is in the spill, and a healthy neighbour gets every
// event meanwhile.
func TestFullQueueSpillsInsteadOfBlocking(t *testing.T) {
	hanging := newListener(t, func(int, *http.Request, []byte) int { return 0 })
	healthy := newListener(t, nil)
	cfg := testConfig(
		EndpointConfig{Name: "hanging", URL: hanging.srv.URL, Secrets: Secrets{newSecret(t)}, QueueSize: 3, Concurrency: 1, Timeout: time.Minute},
		EndpointConfig{Name: "healthy", URL: healthy.srv.URL, Secrets: Secrets{newSecret(t)}},
	)
	p := start(t, cfg, newFileStore(t), newDLQ(t))
	const n = 300
	began := time.Now()
	for i := 0; i < n; i += 30 {
		handleBatch(t, p.Plugin, batchOf(t, i, 30))
		if m := memoryHeld(p.Plugin, "hanging"); m > 3 {
			t.Fatalf("the hanging endpoint holds %d entries in memory, more than its queue of 3", m)
		}
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("queueing %d events took %s: a full queue held HandleBatch up", n, took)
	}
	eventually(t, 10*time.Second, "every event at the healthy endpoint", func() bool { return len(healthy.successes()) == n })
	if got := p.journal.spillLen("hanging"); got != n-3 {
		t.Fatalf("spill of the hanging endpoint holds %d events, want %d (all but its queue of 3)", got, n-3)
	}
	p.journal.mu.Lock()
	x := p.journal.spills["hanging"]
	inCache := 0
	if x.cache != nil {
		inCache = len(x.cache.Events)
	}
	p.journal.mu.Unlock()
	// What is read back ahead of room in memory is one chunk at most.
	if inCache > n/2 {
		t.Fatalf("%d spilled events held in memory", inCache)
	}
}

// Spilled events survive a crash and a graceful restart: every event
// acknowledged reaches the endpoint once it recovers, exactly once, and
// each call's revisions arrive in order although most of them went through
// the spill.
func TestSpillSurvivesRestarts(t *testing.T) {
	for _, crash := range []bool{true, false} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			var up atomic.Bool
			var mu sync.Mutex
			order := map[string][]int{}
			l := newListener(t, func(_ int, _ *http.Request, body []byte) int {
				if !up.Load() {
					return 0 // hang
				}
				var ev schemas.CallEvent
				_ = json.Unmarshal(body, &ev)
				mu.Lock()
				order[ev.CallKey] = append(order[ev.CallKey], ev.Revision)
				mu.Unlock()
				return http.StatusOK
			})
			cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, QueueSize: 4, Concurrency: 2, Timeout: 200 * time.Millisecond})
			cfg.RetrySchedule = []time.Duration{time.Hour}
			store := newFileStore(t)
			d := newDLQ(t)
			p1 := start(t, cfg, store, d)
			const n = 240
			for i := 0; i < n; i += 40 {
				handleBatch(t, p1.Plugin, batchOf(t, i, 40))
			}
			if s := p1.journal.spillLen("a"); s < n-10 {
				t.Fatalf("only %d of %d events spilled; the test means most of them to", s, n)
			}
			if crash {
				store.frozen.Store(true) // nothing saved after the last acknowledgement
			}
			p1.stop(t)
			store.frozen.Store(false)
			up.Store(true)
			cfg.RetrySchedule = []time.Duration{time.Millisecond}
			p2 := start(t, cfg, store, d, func(p *Plugin) {
				p.now = func() time.Time { return time.Now().Add(2 * time.Hour) } // retries due
			})
			eventually(t, 20*time.Second, "every event delivered after the restart", func() bool { return len(l.successes()) == n })
			p2.stop(t)
			for id, c := range l.successes() {
				if c != 1 {
					t.Errorf("event %s delivered %d times", id, c)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for call, revs := range order {
				for i := 1; i < len(revs); i++ {
					if revs[i] < revs[i-1] {
						t.Fatalf("call %s arrived as revisions %v, want them in order", call, revs)
					}
				}
			}
			if len(d.messages()) != 0 {
				t.Fatalf("%d events in the DLQ", len(d.messages()))
			}
		})
	}
}

// Only a full spill (spill_bytes) applies back-pressure: HandleBatch then
// waits, never drops the event, and goes on once the spill drains.
func TestFullSpillAppliesBackPressure(t *testing.T) {
	var up atomic.Bool
	l := hangsUntil(t, &up)
	first := batchOf(t, 0, 4)
	spill := 0 // the bodies of the three events beyond the queue of one
	for _, d := range first[1:] {
		spill += len(d.Payload)
	}
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, QueueSize: 1, Concurrency: 1,
		Timeout: 300 * time.Millisecond, SpillBytes: int64(spill)})
	cfg.RetrySchedule = slices.Repeat([]time.Duration{10 * time.Millisecond}, 100)
	cfg.BreakerFailures = 1 << 20
	d := newDLQ(t)
	p := start(t, cfg, newFileStore(t), d)
	handleBatch(t, p.Plugin, first) // 1 in memory, 3 spilled: full
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := p.HandleBatch(ctx, batchOf(t, 4, 1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("HandleBatch with a full spill = %v, want it to wait until the deadline", err)
	}
	up.Store(true)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- p.HandleBatch(ctx, batchOf(t, 4, 1)) // the redelivery
	}()
	if err := <-done; err != nil {
		t.Fatalf("HandleBatch once the spill drains: %v", err)
	}
	eventually(t, 10*time.Second, "all five delivered", func() bool { return len(l.successes()) == 5 })
	if n := len(d.messages()); n != 0 {
		t.Fatalf("%d events in the DLQ", n)
	}
}

// A flush whose spill save fails drops its spilled events and fails their
// waiters (they were not acknowledged, so they come again); what was
// acknowledged is read back from a fresh journal, in order.
func TestJournalSpillDropsWhatFailed(t *testing.T) {
	store := newMemStore()
	var mu sync.RWMutex
	m := newModel()
	j := newJournal(store, &mu, m.build, 0, 1<<30)
	j.partBytes = 300 // several chunks per flush
	ctx := context.Background()
	if _, err := j.load(ctx); err != nil {
		t.Fatal(err)
	}
	var want []string
	for round := range 12 {
		var ids []string
		var w *waiter
		mu.RLock()
		for k := range 5 {
			id := fmt.Sprintf("ev-%d-%d", round, k)
			ids = append(ids, id)
			w = j.spill("a", snapEvent{ID: id, Body: []byte(`{"pad":"..............................."}`)}, 1<<20)
		}
		mu.RUnlock()
		if round%4 == 1 {
			store.fail.Store(1)
		}
		j.flush(ctx)
		if err := w.wait(ctx); err != nil {
			if round%4 != 1 {
				t.Fatalf("round %d: %v", round, err)
			}
			continue
		}
		if round%4 == 1 {
			t.Fatalf("round %d: a failed save was acknowledged", round)
		}
		want = append(want, ids...)
		if round == 6 {
			j.forceSnap = true // cover the snapshot path too
		}
	}
	fresh := newJournal(store, &mu, m.build, 0, 1<<30)
	if _, err := fresh.load(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		c, skip, err := fresh.headChunk(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			break
		}
		var bytes int64
		for _, e := range c.Events[skip:] {
			got = append(got, e.ID)
			bytes += int64(len(e.Body))
		}
		fresh.unspill("a", len(c.Events)-skip, bytes, nil)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read back %d events %v,\nwant %d %v", len(got), got, len(want), want)
	}
}

// While a slow endpoint drains its spill and new events keep coming, a
// call's revisions still arrive in order: new events queue behind the
// spilled ones, never in memory ahead of them.
func TestSpillKeepsOrderWhileDraining(t *testing.T) {
	var mu sync.Mutex
	order := map[string][]int{}
	l := newListener(t, func(_ int, _ *http.Request, body []byte) int {
		time.Sleep(time.Millisecond)
		var ev schemas.CallEvent
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		order[ev.CallKey] = append(order[ev.CallKey], ev.Revision)
		mu.Unlock()
		return http.StatusOK
	})
	cfg := testConfig(EndpointConfig{Name: "slow", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, QueueSize: 2, Concurrency: 2})
	p := start(t, cfg, newFileStore(t), newDLQ(t))
	const n = 600
	for i := 0; i < n; i += 4 {
		// Batches of four events, calls of three revisions: most calls
		// span two batches, so a call's first revision may be spilled by
		// one batch when the next brings the rest.
		handleBatch(t, p.Plugin, batchOf(t, i, 4))
	}
	eventually(t, 20*time.Second, "every event delivered", func() bool { return len(l.successes()) == n })
	mu.Lock()
	defer mu.Unlock()
	for call, revs := range order {
		if len(revs) != 3 || revs[0] != 1 || revs[1] != 2 || revs[2] != 3 {
			t.Fatalf("call %s arrived as revisions %v, want [1 2 3]", call, revs)
		}
	}
}

// Entries recovered at a restart take their room in memory: new events
// beyond the queue spill, as before the restart, so queue_size bounds
// memory after any number of restarts.
func TestRecoveredEntriesTakeTheirRoom(t *testing.T) {
	hanging := newListener(t, func(int, *http.Request, []byte) int { return 0 })
	cfg := testConfig(EndpointConfig{Name: "hanging", URL: hanging.srv.URL, Secrets: Secrets{newSecret(t)}, QueueSize: 3, Concurrency: 1, Timeout: time.Minute})
	store := newFileStore(t)
	p := start(t, cfg, store, newDLQ(t))
	handleBatch(t, p.Plugin, batchOf(t, 0, 3))
	p.stop(t)
	p.Close()

	p2 := start(t, cfg, store, newDLQ(t))
	eventually(t, 5*time.Second, "the 3 queued entries recovered", func() bool { return memoryHeld(p2.Plugin, "hanging") == 3 })
	handleBatch(t, p2.Plugin, batchOf(t, 3, 5))
	if m := memoryHeld(p2.Plugin, "hanging"); m > 3 {
		t.Fatalf("after a restart the endpoint holds %d entries in memory, more than its queue of 3", m)
	}
	if got := p2.journal.spillLen("hanging"); got != 5 {
		t.Fatalf("spill holds %d events, want the 5 beyond the queue", got)
	}
}

// TestSpillLimitCountsUnsavedEvents: spill_bytes bounds the spill including
// the events spilled since the last flush, not only the saved ones; an
// empty spill takes one event whatever its size, or an event larger than
// the limit could never be queued.
func TestSpillLimitCountsUnsavedEvents(t *testing.T) {
	var mu sync.RWMutex
	j := newJournal(newMemStore(), &mu, func() snapshot { return snapshot{} }, 0, 1<<30)
	ev := func(i int) snapEvent {
		return snapEvent{ID: fmt.Sprint("ev-", i), CallKey: "k", Rev: 1, Order: uint64(i + 1), Body: []byte(`{"n":"0123456789"}`)}
	}
	size := int64(len(ev(0).Body))
	mu.RLock()
	defer mu.RUnlock()
	for i := range 3 {
		if j.spill("a", ev(i), 3*size) == nil {
			t.Fatalf("event %d refused with room for 3", i)
		}
	}
	if j.spill("a", ev(3), 3*size) != nil {
		t.Fatalf("a fourth event spilled beyond spill_bytes of 3 events before any flush")
	}
	if j.spill("b", ev(4), size/2) == nil {
		t.Fatalf("an empty spill refused an event larger than its limit: it could never be queued")
	}
	if got := j.spillLen("a"); got != 3 {
		t.Fatalf("spillLen = %d, want the 3 unsaved events", got)
	}

	// The chunk ring: a spill whose chunks would need every key of the
	// ring is full, however many chunks went through it before.
	const long = 1 << 40 // chunks written and drained over a long run
	for _, tc := range []struct {
		ep     string
		inUse  uint64
		accept bool
	}{{"c", spillRing - 3, true}, {"d", spillRing - 2, false}} {
		j.mu.Lock()
		x := j.index(tc.ep)
		x.Head, x.Tail, x.Count = long, long+tc.inUse, 1
		j.mu.Unlock()
		// A small event needs at most two chunks more: the one it opens and
		// the one after.
		if got := j.spill(tc.ep, ev(5), 1<<30) != nil; got != tc.accept {
			t.Errorf("%d of %d ring keys in use: spill accepted %v, want %v", tc.inUse, spillRing, got, tc.accept)
		}
	}
}

// TestSpillKeysAreARing: chunk keys repeat every spillRing chunks, so the
// spill's keys in the state store are bounded.
func TestSpillKeysAreARing(t *testing.T) {
	j := &journal{prefix: "w1."}
	if a, b := j.chunkKey("a", 5), j.chunkKey("a", 5+spillRing); a != b {
		t.Errorf("chunk keys %q and %q: a chunk spillRing later must reuse the key", a, b)
	}
	if a, b := j.chunkKey("a", 5), j.chunkKey("b", 5); a == b {
		t.Errorf("two endpoints share chunk key %q", a)
	}
}

// TestSpillChunks: a flush cuts each endpoint's spilled events into chunks
// whose saved form stays within the snapshot part size (a Kafka-backed
// store has a record size limit), numbered on from the index's tail; once
// they are durable every endpoint that spilled is told, once.
func TestSpillChunks(t *testing.T) {
	var mu sync.RWMutex
	j := newJournal(newMemStore(), &mu, func() snapshot { return snapshot{} }, 0, 1<<30)
	j.partBytes = 16 << 10
	var told []string
	j.spilled = func(ep string) { told = append(told, ep) }
	body := []byte(`"` + strings.Repeat("x", 1000) + `"`)
	mu.RLock()
	for i := range 100 {
		ep := []string{"a", "b"}[i%2]
		if j.spill(ep, snapEvent{ID: fmt.Sprint("ev-", i), CallKey: "k", Rev: 1, Order: uint64(i + 1), Body: body}, 1<<30) == nil {
			t.Fatalf("event %d refused", i)
		}
	}
	mu.RUnlock()
	j.mu.Lock()
	f := j.takeSpillLocked()
	j.mu.Unlock()
	events := map[string]int{}
	next := map[string]uint64{}
	for _, c := range f.chunks {
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > j.partBytes {
			t.Errorf("chunk %s/%d is %d bytes saved, over the part size %d", c.Ep, c.Seq, len(data), j.partBytes)
		}
		if c.Seq != next[c.Ep] {
			t.Errorf("chunk %s/%d, want number %d", c.Ep, c.Seq, next[c.Ep])
		}
		next[c.Ep]++
		events[c.Ep] += len(c.Events)
	}
	if events["a"] != 50 || events["b"] != 50 || len(f.chunks) < 4 {
		t.Fatalf("%d chunks holding %v events, want 50 each in several chunks", len(f.chunks), events)
	}
	j.commitSpill(f)
	slices.Sort(told)
	if !slices.Equal(told, []string{"a", "b"}) {
		t.Fatalf("endpoints told of their durable spill: %v, want a and b once each", told)
	}
	if j.spillLen("a") != 50 || j.spillLen("b") != 50 {
		t.Fatalf("spill lengths %d and %d after the commit, want 50 each", j.spillLen("a"), j.spillLen("b"))
	}
}

// TestMissingSpillChunkIsSkipped: a chunk the store no longer has (never
// the product of the protocol, but a store can lose data) is reported and
// counted as read, so the endpoint goes on with the chunks after it
// instead of retrying it for ever.
func TestMissingSpillChunkIsSkipped(t *testing.T) {
	var mu sync.RWMutex
	j := newJournal(newMemStore(), &mu, func() snapshot { return snapshot{} }, 0, 1<<30)
	j.mu.Lock()
	x := j.index("a")
	x.Head, x.Tail, x.Count = 0, 2, 5
	j.mu.Unlock()
	c, skip, err := j.headChunk(context.Background(), "a")
	if c == nil || len(c.Events) != 0 || c.Seq != 0 || skip != 0 {
		t.Fatalf("headChunk of a missing chunk = %+v, %d: want an empty chunk 0 to move past", c, skip)
	}
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("err = %v, want it to say the chunk is missing", err)
	}
}

// A spill chunk lost from the state store (a damaged disk) is reported and
// skipped: the endpoint goes on with later events instead of waiting for
// ever behind it.
func TestLostSpillChunkDoesNotStallTheEndpoint(t *testing.T) {
	var up atomic.Bool
	l := hangsUntil(t, &up)
	store := newFileStore(t)
	cfg := spillFour(t, store, l)
	chunks, err := filepath.Glob(filepath.Join(store.Dir, "queue.spill.*"))
	if err != nil || len(chunks) == 0 {
		t.Fatalf("no spill chunk on disk (%v): the test needs one to lose", err)
	}
	for _, c := range chunks {
		if err := os.Remove(c); err != nil {
			t.Fatal(err)
		}
	}

	up.Store(true)
	p2 := start(t, cfg, store, newDLQ(t))
	handleBatch(t, p2.Plugin, batchOf(t, 5, 1))
	later := batchOf(t, 5, 1)[0].Event.EventID
	eventually(t, 10*time.Second, "the event after the lost chunk", func() bool { return l.successes()[later] == 1 })
}

// flakyLoads fails the next loads of spill chunks, as a state store that
// is briefly unreachable does.
type flakyLoads struct {
	*fileStore
	fail atomic.Int32
}

func (s *flakyLoads) Load(ctx context.Context, key string) ([]byte, error) {
	if strings.Contains(key, "queue.spill.") && s.fail.Add(-1) >= 0 {
		return nil, errors.New("state store unreachable")
	}
	return s.fileStore.Load(ctx, key)
}

// A failed read of the spill is retried on its own: nothing else may ever
// wake the spill reader (memory is empty and no event comes), so waiting
// for room would leave the spilled events undelivered.
func TestSpillReadErrorIsRetried(t *testing.T) {
	var up atomic.Bool
	l := hangsUntil(t, &up)
	store := &flakyLoads{fileStore: newFileStore(t)}
	cfg := spillFour(t, store, l)

	store.fail.Store(1)
	up.Store(true)
	start(t, cfg, store, newDLQ(t))
	eventually(t, 10*time.Second, "all five delivered", func() bool { return len(l.successes()) == 5 })
}

// hangsUntil is a listener that hangs every request until up is set and
// answers 200 afterwards.
func hangsUntil(t *testing.T, up *atomic.Bool) *listener {
	return newListener(t, func(int, *http.Request, []byte) int {
		if up.Load() {
			return http.StatusOK
		}
		return 0
	})
}

// spillFour runs a plug-in with a queue of one for l's endpoint "a", hands
// it five events (one held in memory, four spilled) and stops it; it
// returns the config to start it again with.
func spillFour(t *testing.T, store consumers.StateStore, l *listener) Config {
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, QueueSize: 1, Concurrency: 1, Timeout: time.Minute})
	p := start(t, cfg, store, newDLQ(t))
	handleBatch(t, p.Plugin, batchOf(t, 0, 5))
	p.stop(t)
	p.Close()
	return cfg
}
