package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/callstream/callstream/consumers"
)

// The durable queue is a snapshot plus a log of changes, kept in the
// plug-in's StateStore. Each flush saves the changes made since the last one
// as a log segment (several when they are large) under keys from a ring of
// walRing keys; a segment holds its own sequence number, so a stale segment
// left in a reused key is recognised and replay stops there. When the log outgrows the snapshot (or
// half the ring), the live queue is saved as a new snapshot naming the first
// segment that follows it. Save replaces a key atomically, so a crash at any
// point leaves either the old or the new snapshot, each consistent with the
// segments after it. Saved state is bounded by the endpoints' queue sizes.
//
// A snapshot is written in parts of about snapshotPartBytes (a StateStore
// backed by a Kafka topic takes records of about 1 MB), under keys of one of
// two generations, then the header naming the generation and the number of
// parts is saved: until then the previous header and its parts, under the
// other generation's keys, stay intact.
const (
	walRing           = 4096
	snapshotKey       = "queue.snapshot"
	snapshotPartBytes = 512 << 10
)

func (j *journal) walKey(seq uint64) string {
	return fmt.Sprintf("%squeue.wal.%04d", j.prefix, seq%walRing)
}

func (j *journal) partKey(gen uint64, i int) string {
	return fmt.Sprintf("%squeue.snapshot.%d.%04d", j.prefix, gen%2, i)
}

func (j *journal) headerKey() string { return j.prefix + snapshotKey }

// snapshotHeader is saved under snapshotKey, after the parts it names.
type snapshotHeader struct {
	WalFrom uint64 `json:"wal_from"`
	Gen     uint64 `json:"gen"`
	Parts   int    `json:"parts"`
}

// Operation kinds in the log.
const (
	opAdd     = "add"  // an event enqueued for the endpoints in Eps
	opDone    = "done" // delivered, or handed to the DLQ
	opTry     = "try"  // an attempt failed; Attempts and NextAt are current
	opDisable = "off"  // the endpoint was disabled
	opChunk   = "sp"   // a chunk of spilled events was saved (spill.go)
	opUnspill = "usp"  // spilled events moved into memory (spill.go)
)

type op struct {
	K        string   `json:"k"`
	ID       string   `json:"id,omitempty"`
	CallKey  string   `json:"ck,omitempty"`
	Rev      int      `json:"rev,omitempty"`
	Body     []byte   `json:"b,omitempty"`
	Eps      []string `json:"eps,omitempty"`
	Order    uint64   `json:"o,omitempty"`
	Ep       string   `json:"ep,omitempty"`
	Attempts int      `json:"n,omitempty"`
	NextAt   int64    `json:"at,omitempty"`
	URL      string   `json:"url,omitempty"`
	Reason   string   `json:"r,omitempty"`
	// Where the event was consumed, for its DLQ metadata.
	Topic  string `json:"t,omitempty"`
	Part   int32  `json:"p,omitempty"`
	Off    int64  `json:"off,omitempty"`
	HasPos bool   `json:"hp,omitempty"`
	// Spill operations: the chunk, how far it was read, how many events
	// and bytes of bodies.
	Chunk uint64 `json:"c,omitempty"`
	Skip  int    `json:"sk,omitempty"`
	Count int    `json:"cnt,omitempty"`
	Bytes int64  `json:"by,omitempty"`
}

type segment struct {
	Seq uint64 `json:"seq"`
	Ops []op   `json:"ops"`
}

type snapEvent struct {
	ID      string `json:"id"`
	CallKey string `json:"ck"`
	Rev     int    `json:"rev"`
	Order   uint64 `json:"o"`
	Body    []byte `json:"b"`
	Topic   string `json:"t,omitempty"`
	Part    int32  `json:"p,omitempty"`
	Off     int64  `json:"off,omitempty"`
	HasPos  bool   `json:"hp,omitempty"`
}

type snapEntry struct {
	Ep       string `json:"ep"`
	ID       string `json:"id"`
	Attempts int    `json:"n,omitempty"`
	NextAt   int64  `json:"at,omitempty"`
}

type disabledRec struct {
	Ep     string `json:"ep"`
	URL    string `json:"url"`
	Reason string `json:"r"`
}

// snapshot is the live queue; each saved part holds a slice of it.
type snapshot struct {
	Events   []snapEvent   `json:"events"`
	Entries  []snapEntry   `json:"entries"`
	Disabled []disabledRec `json:"disabled"`
	Spills   []spillIndex  `json:"spills,omitempty"`
}

// recovered is the queue rebuilt from the snapshot and the log.
type recovered struct {
	events   map[string]*snapEvent
	entries  map[[2]string]*snapEntry // endpoint, event id
	disabled map[string]disabledRec
	spills   map[string]*spillIndex
	nextSeq  uint64
	maxOrder uint64
}

func (r *recovered) apply(o op) {
	switch o.K {
	case opAdd:
		if _, ok := r.events[o.ID]; !ok {
			r.events[o.ID] = &snapEvent{ID: o.ID, CallKey: o.CallKey, Rev: o.Rev, Order: o.Order, Body: o.Body,
				Topic: o.Topic, Part: o.Part, Off: o.Off, HasPos: o.HasPos}
		}
		r.maxOrder = max(r.maxOrder, o.Order)
		for _, ep := range o.Eps {
			k := [2]string{ep, o.ID}
			if _, ok := r.entries[k]; !ok {
				r.entries[k] = &snapEntry{Ep: ep, ID: o.ID}
			}
		}
	case opDone:
		delete(r.entries, [2]string{o.Ep, o.ID})
	case opTry:
		if e, ok := r.entries[[2]string{o.Ep, o.ID}]; ok {
			e.Attempts, e.NextAt = o.Attempts, o.NextAt
		}
	case opDisable:
		r.disabled[o.Ep] = disabledRec{Ep: o.Ep, URL: o.URL, Reason: o.Reason}
	case opChunk, opUnspill:
		r.applySpill(o)
	}
}

// waiter is closed once the operations appended before it are durable.
type waiter struct {
	done chan struct{}
	err  error
}

func newWaiter() *waiter { return &waiter{done: make(chan struct{})} }

// wait returns the flush error, or ctx's error if ctx ends first.
func (w *waiter) wait(ctx context.Context) error {
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// journal batches queue changes into StateStore saves.
type journal struct {
	store        consumers.StateStore
	prefix       string // of every key: the instance's name and a dot, or ""
	flushEvery   time.Duration
	compactBytes int
	// state is held shared by whoever changes the in-memory queue and
	// appends the matching operation, and exclusively while a snapshot is
	// taken, so a snapshot never sees a change without its operation or
	// the reverse.
	state *sync.RWMutex
	build func() snapshot // called with state held exclusively
	// observe, when set, is told about every save: "segment", "snapshot"
	// or "spill", how long it took and how many bytes it wrote.
	observe func(kind string, took time.Duration, bytes int)
	// spilled, when set, is told when an endpoint's spilled events
	// became durable, so they may be read back.
	spilled func(ep string)

	mu        sync.Mutex
	ops       []op
	w         *waiter
	kick      chan struct{}
	seq       uint64 // next segment's sequence number
	walFrom   uint64 // first segment after the saved snapshot
	walBytes  int
	lastSnap  int
	forceSnap bool
	gen       uint64 // generation of the saved snapshot
	partBytes int    // size of a snapshot part, a log segment, a spill chunk
	spills    map[string]*spillIndex
	nSpilled  int // events spilled since the last flush
}

func newJournal(store consumers.StateStore, state *sync.RWMutex, build func() snapshot, flushEvery time.Duration, compactBytes int) *journal {
	return &journal{
		store: store, state: state, build: build,
		flushEvery: flushEvery, compactBytes: compactBytes,
		w: newWaiter(), kick: make(chan struct{}, 1), partBytes: snapshotPartBytes,
		spills: map[string]*spillIndex{},
	}
}

// append records operations; the caller holds j.state shared. The returned
// waiter is released when they are durable.
func (j *journal) append(ops ...op) *waiter {
	j.mu.Lock()
	j.ops = append(j.ops, ops...)
	w := j.w
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return w
}

// pending returns the waiter of the next flush without adding anything.
func (j *journal) pending() *waiter {
	j.mu.Lock()
	defer j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return j.w
}

// load reads the snapshot and replays the log after it.
func (j *journal) load(ctx context.Context) (*recovered, error) {
	r := &recovered{
		events:   map[string]*snapEvent{},
		entries:  map[[2]string]*snapEntry{},
		disabled: map[string]disabledRec{},
		spills:   map[string]*spillIndex{},
	}
	data, err := j.store.Load(ctx, j.headerKey())
	if err != nil {
		return nil, fmt.Errorf("webhooks: load queue snapshot: %w", err)
	}
	if len(data) > 0 {
		var h snapshotHeader
		if err := json.Unmarshal(data, &h); err != nil {
			return nil, fmt.Errorf("webhooks: decode queue snapshot header: %w", err)
		}
		for i := range h.Parts {
			data, err := j.store.Load(ctx, j.partKey(h.Gen, i))
			if err != nil {
				return nil, fmt.Errorf("webhooks: load queue snapshot part %d: %w", i, err)
			}
			var s snapshot
			if err := json.Unmarshal(data, &s); err != nil {
				return nil, fmt.Errorf("webhooks: decode queue snapshot part %d: %w", i, err)
			}
			for i := range s.Events {
				e := s.Events[i]
				r.events[e.ID] = &e
				r.maxOrder = max(r.maxOrder, e.Order)
			}
			for i := range s.Entries {
				e := s.Entries[i]
				r.entries[[2]string{e.Ep, e.ID}] = &e
			}
			for _, d := range s.Disabled {
				r.disabled[d.Ep] = d
			}
			for _, x := range s.Spills {
				r.spills[x.Ep] = &x
			}
		}
		r.nextSeq = h.WalFrom
		j.gen = h.Gen
	}
	for {
		data, err := j.store.Load(ctx, j.walKey(r.nextSeq))
		if err != nil {
			return nil, fmt.Errorf("webhooks: load queue log %d: %w", r.nextSeq, err)
		}
		if len(data) == 0 {
			break
		}
		var seg segment
		if err := json.Unmarshal(data, &seg); err != nil {
			// A torn segment cannot be the product of an atomic Save;
			// treat it as the end of the log rather than refuse to start.
			break
		}
		if seg.Seq != r.nextSeq {
			break // stale segment from an earlier lap of the ring
		}
		for _, o := range seg.Ops {
			r.apply(o)
		}
		r.nextSeq++
	}
	used := make(map[string]bool, len(r.entries))
	for k := range r.entries {
		used[k[1]] = true
	}
	for id := range r.events {
		if !used[id] {
			delete(r.events, id)
		}
	}
	j.seq = r.nextSeq
	j.walFrom = r.nextSeq
	j.mu.Lock()
	j.spills = map[string]*spillIndex{}
	for ep, x := range r.spills {
		c := *x
		j.spills[ep] = &c
	}
	j.mu.Unlock()
	j.forceSnap = true // start from a fresh snapshot, so old segments are dead
	return r, nil
}

// run flushes until ctx ends, then flushes once more with a short deadline
// so a graceful shutdown loses nothing that was acknowledged.
func (j *journal) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			// End with a snapshot, so the next start loads it and no log:
			// a Kafka-backed store reads its topic for every key loaded.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			j.mu.Lock()
			j.forceSnap = true
			j.mu.Unlock()
			j.flush(fctx)
			cancel()
			return
		case <-j.kick:
		}
		if j.flushEvery > 0 {
			t := time.NewTimer(j.flushEvery)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		j.flush(ctx)
	}
}

// flush saves what was appended since the last flush, as a segment or, when
// due, as a new snapshot, and releases the waiters. Spilled events are saved
// first, as chunks the segment or snapshot then references; if any save
// fails, the flush's spilled events are dropped (their waiters fail, so
// they were not acknowledged and come again) and the next flush is a
// snapshot of what memory holds.
func (j *journal) flush(ctx context.Context) {
	j.mu.Lock()
	snap := j.forceSnap || j.walBytes > max(j.compactBytes, 2*j.lastSnap) || j.seq-j.walFrom >= walRing/2
	if len(j.ops) == 0 && j.nSpilled == 0 && !snap {
		// Nothing new: everything appended so far is durable already, so
		// release whoever waits on this flush.
		w := j.w
		j.w = newWaiter()
		j.mu.Unlock()
		close(w.done)
		return
	}
	j.mu.Unlock()

	var (
		w   *waiter
		sp  flushSpill
		err error
	)
	if snap {
		j.state.Lock()
		j.mu.Lock()
		w, j.w = j.w, newWaiter()
		j.ops = nil
		sp = j.takeSpillLocked()
		from := j.seq
		j.mu.Unlock()
		s := j.build()
		s.Spills = sp.after
		j.state.Unlock()
		err = j.saveSpill(ctx, sp)
		if err == nil {
			start := time.Now()
			// err is the flush's error, handed to the waiters below:
			// assign it, never shadow it, or a failed save would be
			// acknowledged.
			var n int
			n, err = j.saveSnapshot(ctx, s, from)
			if j.observe != nil {
				j.observe("snapshot", time.Since(start), n)
			}
			j.mu.Lock()
			if err == nil {
				j.walFrom, j.walBytes, j.lastSnap, j.forceSnap = from, 0, n, false
				j.gen++
			} else {
				err = fmt.Errorf("webhooks: save queue snapshot: %w", err)
			}
			j.mu.Unlock()
		}
	} else {
		j.mu.Lock()
		w, j.w = j.w, newWaiter()
		sp = j.takeSpillLocked()
		segs := splitOps(append(sp.ops, j.ops...), j.seq, j.partBytes)
		j.ops = nil
		j.seq += uint64(len(segs))
		j.mu.Unlock()
		err = j.saveSpill(ctx, sp)
		written := 0
		for _, seg := range segs {
			if err != nil {
				break
			}
			var data []byte
			start := time.Now()
			if data, err = json.Marshal(seg); err == nil {
				err = j.store.Save(ctx, j.walKey(seg.Seq), data)
			}
			if j.observe != nil {
				j.observe("segment", time.Since(start), len(data))
			}
			if err != nil {
				err = fmt.Errorf("webhooks: save queue log %d: %w", seg.Seq, err)
				break
			}
			written += len(data)
		}
		j.mu.Lock()
		j.walBytes += written
		j.mu.Unlock()
	}
	if err == nil {
		j.commitSpill(sp)
	} else {
		// A segment is missing (replay would stop before it) or memory
		// holds changes no save has: the next flush must be a snapshot
		// holding everything.
		j.mu.Lock()
		j.forceSnap = true
		j.mu.Unlock()
		j.dropSpill(sp)
	}
	w.err = err
	close(w.done)
}

// saveSpill saves a flush's chunks and reports them to observe.
func (j *journal) saveSpill(ctx context.Context, sp flushSpill) error {
	if len(sp.chunks) == 0 {
		return nil
	}
	start := time.Now()
	n, err := j.saveChunks(ctx, sp)
	if j.observe != nil {
		j.observe("spill", time.Since(start), n)
	}
	return err
}

// saveSnapshot writes s in parts under the next generation's keys, then the
// header; it returns the bytes written.
func (j *journal) saveSnapshot(ctx context.Context, s snapshot, walFrom uint64) (int, error) {
	gen := j.gen + 1
	parts := splitSnapshot(s, j.partBytes)
	total := 0
	for i, part := range parts {
		data, err := json.Marshal(part)
		if err != nil {
			return total, err
		}
		if err := j.store.Save(ctx, j.partKey(gen, i), data); err != nil {
			return total, err
		}
		total += len(data)
	}
	data, err := json.Marshal(snapshotHeader{WalFrom: walFrom, Gen: gen, Parts: len(parts)})
	if err != nil {
		return total, err
	}
	return total + len(data), j.store.Save(ctx, j.headerKey(), data)
}

// splitSnapshot cuts s into parts of about limit bytes of bodies (or 4096
// entries); the disabled endpoints and the spill indices go in the first
// part.
func splitSnapshot(s snapshot, limit int) []snapshot {
	parts := []snapshot{{Disabled: s.Disabled, Spills: s.Spills}}
	size := 0
	for _, e := range s.Events {
		cost := len(e.Body)*4/3 + 128 // base64 body and the other fields
		if size > 0 && size+cost > limit {
			parts = append(parts, snapshot{})
			size = 0
		}
		last := &parts[len(parts)-1]
		last.Events = append(last.Events, e)
		size += cost
	}
	for i := 0; i < len(s.Entries); i += 4096 {
		k := i / 4096
		if k >= len(parts) {
			parts = append(parts, snapshot{})
		}
		parts[k].Entries = s.Entries[i:min(i+4096, len(s.Entries))]
	}
	return parts
}

// splitOps cuts one flush's operations into segments of about limit bytes
// (a Kafka-backed store takes records of about 1 MB), numbered from seq.
func splitOps(ops []op, seq uint64, limit int) []segment {
	segs := []segment{{Seq: seq}}
	size := 0
	for _, o := range ops {
		cost := len(o.Body)*4/3 + 160
		if size > 0 && size+cost > limit {
			segs = append(segs, segment{Seq: seq + uint64(len(segs))})
			size = 0
		}
		last := &segs[len(segs)-1]
		last.Ops = append(last.Ops, o)
		size += cost
	}
	return segs
}
