package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// model is the queue state a journal must reproduce: live entries and their
// attempt counts, per endpoint.
type model struct {
	events  map[string]snapEvent
	entries map[[2]string]int
}

func newModel() *model {
	return &model{events: map[string]snapEvent{}, entries: map[[2]string]int{}}
}

func (m *model) build() snapshot {
	var s snapshot
	used := map[string]bool{}
	for k, n := range m.entries {
		s.Entries = append(s.Entries, snapEntry{Ep: k[0], ID: k[1], Attempts: n})
		used[k[1]] = true
	}
	for id := range used {
		s.Events = append(s.Events, m.events[id])
	}
	return s
}

func (m *model) equal(t *testing.T, r *recovered) {
	t.Helper()
	if len(r.entries) != len(m.entries) {
		t.Fatalf("recovered %d entries, want %d", len(r.entries), len(m.entries))
	}
	for k, n := range m.entries {
		e, ok := r.entries[k]
		if !ok || e.Attempts != n {
			t.Fatalf("entry %v: recovered %+v, want attempts %d", k, e, n)
		}
		if ev := r.events[k[1]]; ev == nil || string(ev.Body) != string(m.events[k[1]].Body) {
			t.Fatalf("event %s body lost", k[1])
		}
	}
}

// loadedJournal is a started journal (no size compaction) over an empty
// memStore, snapshotting the returned model.
func loadedJournal(t *testing.T) (*journal, *memStore, *sync.RWMutex, *model) {
	t.Helper()
	store, mu, m := newMemStore(), &sync.RWMutex{}, newModel()
	j := newJournal(store, mu, m.build, 0, 1<<30)
	if _, err := j.load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return j, store, mu, m
}

// memStore is an in-memory StateStore for the journal's logic tests; it
// fails the Saves it is told to.
type memStore struct {
	mu        sync.Mutex
	m         map[string][]byte
	fail      atomic.Int32 // fail this many next Saves
	failAfter atomic.Int32 // succeed this many more Saves, then fail the rest (0: off)
}

func newMemStore() *memStore { return &memStore{m: map[string][]byte{}} }

func (s *memStore) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key], nil
}

func (s *memStore) Save(_ context.Context, key string, value []byte) error {
	if s.fail.Load() > 0 {
		s.fail.Add(-1)
		return errors.New("disk full")
	}
	if n := s.failAfter.Load(); n > 0 {
		if n == 1 {
			return errors.New("crashed")
		}
		s.failAfter.Add(-1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = append([]byte(nil), value...)
	return nil
}

// Random adds, retries and completions, flushed in batches, with frequent
// compaction and some failed saves, are recovered exactly.
func TestJournalRecoversWhatWasAcknowledged(t *testing.T) {
	for _, compact := range []int{1 << 30, 2048} {
		t.Run(fmt.Sprintf("compact_%d", compact), func(t *testing.T) {
			store := newMemStore()
			var mu sync.RWMutex
			m := newModel()
			j := newJournal(store, &mu, m.build, 0, compact)
			j.partBytes = 1024 // several parts per snapshot
			if _, err := j.load(context.Background()); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			eps := []string{"a", "b", "c"}
			var live [][2]string
			ctx := context.Background()
			for step := range 6000 {
				mu.RLock()
				switch r := rng.IntN(10); {
				case r < 4 || len(live) == 0:
					id := fmt.Sprintf("ev-%d", step)
					ev := snapEvent{ID: id, CallKey: "k", Rev: 1, Order: uint64(step + 1), Body: []byte(`{"n":` + fmt.Sprint(step) + `}`)}
					m.events[id] = ev
					var names []string
					for _, ep := range eps {
						if rng.IntN(2) == 0 {
							names = append(names, ep)
							m.entries[[2]string{ep, id}] = 0
							live = append(live, [2]string{ep, id})
						}
					}
					j.append(op{K: opAdd, ID: id, CallKey: ev.CallKey, Rev: 1, Order: ev.Order, Body: ev.Body, Eps: names})
				case r < 7:
					k := live[rng.IntN(len(live))]
					m.entries[k]++
					j.append(op{K: opTry, Ep: k[0], ID: k[1], Attempts: m.entries[k], NextAt: 1})
				default:
					i := rng.IntN(len(live))
					k := live[i]
					live[i] = live[len(live)-1]
					live = live[:len(live)-1]
					delete(m.entries, k)
					j.append(op{K: opDone, Ep: k[0], ID: k[1]})
				}
				mu.RUnlock()
				if step%7 == 0 {
					if step%500 == 0 {
						store.fail.Store(1)
					}
					j.flush(ctx)
				}
			}
			j.flush(ctx)
			j.flush(ctx) // a failed save above is followed by a snapshot
			fresh := newJournal(store, &mu, m.build, 0, compact)
			r, err := fresh.load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m.equal(t, r)
			if compact < 1<<30 && j.gen < 2 {
				t.Fatalf("only %d snapshots written; the test means to cover compaction", j.gen)
			}
		})
	}
}

// A segment left in a ring slot by an earlier lap (wrong sequence number)
// ends the replay instead of being applied.
func TestJournalIgnoresStaleSegments(t *testing.T) {
	j, store, mu, m := loadedJournal(t)
	ctx := context.Background()
	j.flush(ctx) // the startup snapshot
	m.events["x"] = snapEvent{ID: "x", Body: []byte(`{}`)}
	m.entries[[2]string{"a", "x"}] = 0
	j.append(op{K: opAdd, ID: "x", Body: []byte(`{}`), Eps: []string{"a"}})
	j.flush(ctx)
	stale, _ := json.Marshal(segment{Seq: j.seq + walRing, Ops: []op{{K: opDone, Ep: "a", ID: "x"}}})
	if err := store.Save(ctx, j.walKey(j.seq), stale); err != nil {
		t.Fatal(err)
	}
	r, err := newJournal(store, mu, m.build, 0, 1<<30).load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m.equal(t, r)
}

// A failed save fails the waiters of that flush.
func TestJournalSaveErrorReachesWaiters(t *testing.T) {
	j, store, _, _ := loadedJournal(t)
	ctx := context.Background()
	j.flush(ctx)
	store.fail.Store(1)
	w := j.append(op{K: opAdd, ID: "x", Eps: []string{"a"}})
	j.flush(ctx)
	if err := w.wait(ctx); err == nil {
		t.Fatal("waiter of a failed save got no error")
	}
	w = j.pending()
	j.flush(ctx)
	if err := w.wait(ctx); err != nil {
		t.Fatalf("the snapshot after a failure: %v", err)
	}
}

// A snapshot whose parts were only partly written (a crash before its
// header) leaves the previous snapshot in force.
func TestJournalPartialSnapshotKeepsPrevious(t *testing.T) {
	store := newMemStore()
	var mu sync.RWMutex
	m := newModel()
	j := newJournal(store, &mu, m.build, 0, 1<<30)
	j.partBytes = 256
	ctx := context.Background()
	if _, err := j.load(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		id := fmt.Sprint("ev-", i)
		m.events[id] = snapEvent{ID: id, Body: []byte(`{"pad":"` + fmt.Sprint(i) + `.........................................."}`)}
		m.entries[[2]string{"a", id}] = 0
	}
	j.flush(ctx) // the startup snapshot, of all 20
	want := &model{events: m.events, entries: maps.Clone(m.entries)}
	// The next snapshot fails after its first part.
	delete(m.entries, [2]string{"a", "ev-0"})
	j.forceSnap = true
	store.failAfter.Store(2) // the first part is saved, then the "crash"
	j.flush(ctx)
	r, err := newJournal(store, &mu, m.build, 0, 1<<30).load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want.equal(t, r)
}

// TestJournalKeysAreBounded: the WAL is a ring of walRing keys and the
// snapshot alternates between two generations' parts, so the state store
// holds a bounded set of keys however long the plug-in runs.
func TestJournalKeysAreBounded(t *testing.T) {
	j := &journal{prefix: "w1."}
	if a, b := j.walKey(7), j.walKey(7+walRing); a != b {
		t.Errorf("WAL keys %q and %q: a segment walRing later must reuse the key", a, b)
	}
	if a, b := j.walKey(7), j.walKey(8); a == b {
		t.Errorf("consecutive WAL segments share key %q", a)
	}
	if got := j.walKey(walRing + 3); got != "w1.queue.wal.0003" {
		t.Errorf("walKey = %q, want w1.queue.wal.0003", got)
	}
	if a, b := j.partKey(4, 1), j.partKey(6, 1); a != b {
		t.Errorf("snapshot parts %q and %q: generations two apart must share keys", a, b)
	}
	if a, b := j.partKey(4, 1), j.partKey(5, 1); a == b {
		t.Errorf("consecutive snapshot generations share key %q: a torn snapshot would overwrite the previous one", a)
	}
}

// TestJournalRingForcesSnapshots: with compaction by size out of reach,
// a long run of small flushes must still snapshot before the WAL's key
// ring wraps onto segments the next start needs, and recover exactly.
func TestJournalRingForcesSnapshots(t *testing.T) {
	j, store, mu, m := loadedJournal(t)
	ctx := context.Background()
	for step := range walRing + walRing/2 {
		id := fmt.Sprintf("ev-%d", step)
		ev := snapEvent{ID: id, CallKey: "k", Rev: 1, Order: uint64(step + 1), Body: []byte(`{}`)}
		mu.RLock()
		m.events[id] = ev
		m.entries[[2]string{"a", id}] = 0
		j.append(op{K: opAdd, ID: id, CallKey: ev.CallKey, Rev: 1, Order: ev.Order, Body: ev.Body, Eps: []string{"a"}})
		mu.RUnlock()
		j.flush(ctx)
		if n := j.seq - j.walFrom; n > walRing/2 {
			t.Fatalf("step %d: %d segments since the last snapshot, more than half the ring of %d", step, n, walRing)
		}
	}
	if j.gen < 2 {
		t.Fatalf("%d snapshots in %d flushes", j.gen, walRing+walRing/2)
	}
	r, err := newJournal(store, mu, m.build, 0, 1<<30).load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m.equal(t, r)
}

// TestSplitSnapshot: a snapshot is cut into parts whose saved form stays
// within the part size (a Kafka-backed store has a record size limit) and
// at most 4096 entries each, with nothing lost or repeated; the disabled
// endpoints and spill indices ride in the first part.
func TestSplitSnapshot(t *testing.T) {
	const limit = 16 << 10
	body := []byte(`"` + strings.Repeat("x", 1000) + `"`)
	var s snapshot
	s.Disabled = []disabledRec{{Ep: "gone", URL: "https://x/", Reason: "410"}}
	s.Spills = []spillIndex{{Ep: "a", Head: 1, Tail: 2, Count: 3}}
	for i := range 100 {
		s.Events = append(s.Events, snapEvent{ID: fmt.Sprint("ev-", i), CallKey: "k", Rev: 1, Order: uint64(i + 1), Body: body})
	}
	for i := range 3*4096 + 5 {
		s.Entries = append(s.Entries, snapEntry{Ep: "a", ID: fmt.Sprint("ev-", i%100), Attempts: i})
	}
	parts := splitSnapshot(s, limit)
	var events, entries int
	for i, p := range parts {
		size := 0
		for _, e := range p.Events {
			b, _ := json.Marshal(e)
			size += len(b)
		}
		if size > limit {
			t.Errorf("part %d holds %d bytes of events, over the part size %d", i, size, limit)
		}
		if len(p.Entries) > 4096 {
			t.Errorf("part %d holds %d entries, over 4096", i, len(p.Entries))
		}
		if i > 0 && (p.Disabled != nil || p.Spills != nil) {
			t.Errorf("part %d holds disabled endpoints or spills; they belong to the first", i)
		}
		for j, e := range p.Entries {
			if e.Attempts != entries+j {
				t.Fatalf("part %d entry %d is entry %d of the snapshot, want %d", i, j, e.Attempts, entries+j)
			}
		}
		events += len(p.Events)
		entries += len(p.Entries)
	}
	if events != len(s.Events) || entries != len(s.Entries) || len(parts) < 6 {
		t.Fatalf("%d parts with %d events and %d entries, want all %d and %d in several parts", len(parts), events, entries, len(s.Events), len(s.Entries))
	}
	if len(parts[0].Disabled) != 1 || len(parts[0].Spills) != 1 {
		t.Fatalf("first part lost the disabled endpoints or spills: %+v", parts[0])
	}
	// Few events and many entries: the entries need parts of their own.
	s.Events = s.Events[:1]
	parts = splitSnapshot(s, limit)
	if len(parts) != 4 || len(parts[3].Entries) != 5 {
		t.Fatalf("%d parts for one event and %d entries, want 4, the last with 5 entries", len(parts), len(s.Entries))
	}
}

// TestSplitOps: one flush's operations become segments numbered on from
// seq, each within the size limit once saved, in order.
func TestSplitOps(t *testing.T) {
	const limit = 16 << 10
	body := []byte(`"` + strings.Repeat("x", 1000) + `"`)
	var ops []op
	for i := range 100 {
		ops = append(ops, op{K: opAdd, ID: fmt.Sprint("ev-", i), CallKey: "k", Rev: 1, Order: uint64(i + 1), Body: body, Eps: []string{"a"}})
	}
	segs := splitOps(ops, 41, limit)
	n := 0
	for i, s := range segs {
		if s.Seq != 41+uint64(i) {
			t.Errorf("segment %d numbered %d, want %d", i, s.Seq, 41+i)
		}
		if b, _ := json.Marshal(s); len(b) > limit {
			t.Errorf("segment %d is %d bytes saved, over %d", i, len(b), limit)
		}
		for _, o := range s.Ops {
			if o.ID != ops[n].ID {
				t.Fatalf("segment %d holds %s where %s comes", i, o.ID, ops[n].ID)
			}
			n++
		}
	}
	if n != len(ops) || len(segs) < 4 {
		t.Fatalf("%d segments with %d ops, want all %d in several", len(segs), n, len(ops))
	}
}
