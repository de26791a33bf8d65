package webhooks

import (
	"container/heap"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// event is one call event's body, shared by the entries of every endpoint
// it was enqueued for.
type event struct {
	id, callKey string
	rev         int
	order       uint64 // enqueue order, to keep a call's revisions in order
	body        []byte
	pos         position
}

// position is where the event was consumed, for its DLQ metadata.
type position struct {
	topic  string
	part   int32
	off    int64
	hasPos bool
}

func (e *event) snap() snapEvent {
	return snapEvent{ID: e.id, CallKey: e.callKey, Rev: e.rev, Order: e.order, Body: e.body,
		Topic: e.pos.topic, Part: e.pos.part, Off: e.pos.off, HasPos: e.pos.hasPos}
}

func eventOf(s *snapEvent) *event {
	return &event{id: s.ID, callKey: s.CallKey, rev: s.Rev, order: s.Order, body: s.Body,
		pos: position{topic: s.Topic, part: s.Part, off: s.Off, hasPos: s.HasPos}}
}

// entry is one event waiting for delivery to one endpoint.
type entry struct {
	ev         *event
	attempts   int // failed attempts so far
	nextAt     time.Time
	inFlight   bool
	idx        int // position in the ready heap; -1 when not in it
	lane       *lane
	lastStatus int
	lastErr    string
}

// lane holds one call's entries in delivery order. Only the head is ever
// attempted, so a call's revisions reach an endpoint in order even when one
// of them needs retries, while other calls are not held up.
type lane struct {
	key string
	q   []*entry
}

// readyHeap orders lane heads by due time.
type readyHeap []*entry

func (h readyHeap) Len() int { return len(h) }
func (h readyHeap) Less(i, j int) bool {
	if !h[i].nextAt.Equal(h[j].nextAt) {
		return h[i].nextAt.Before(h[j].nextAt)
	}
	return h[i].ev.order < h[j].ev.order
}
func (h readyHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *readyHeap) Push(x any) {
	e := x.(*entry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *readyHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}

// breaker is a per-endpoint circuit breaker: after `threshold` consecutive
// failures it opens for `cooldown`, then lets one probe through (half-open);
// the probe's outcome closes it or opens it again.
type breaker struct {
	threshold int
	cooldown  time.Duration
	fails     int
	openUntil time.Time
	probing   bool
}

// allow reports whether an attempt may start now; if not, wait is how long
// until it may (0: until another attempt finishes).
func (b *breaker) allow(now time.Time) (ok bool, wait time.Duration) {
	if b.fails < b.threshold {
		return true, 0
	}
	if now.Before(b.openUntil) {
		return false, b.openUntil.Sub(now)
	}
	if b.probing {
		return false, 0
	}
	b.probing = true
	return true, 0
}

func (b *breaker) record(ok bool, now time.Time) {
	b.probing = false
	if ok {
		b.fails = 0
		return
	}
	b.fails++
	if b.fails >= b.threshold {
		b.openUntil = now.Add(b.cooldown)
	}
}

func (b *breaker) open() bool { return b.fails >= b.threshold }

// endpoint is one subscription's queue, workers' state and breaker.
type endpoint struct {
	name        string
	url         string
	filter      Filter
	headers     http.Header
	timeout     time.Duration
	concurrency int
	signer      *signer
	limiter     *rate.Limiter     // nil: unlimited
	wake        chan struct{}     // a worker may have work
	room        chan struct{}     // the queue has room, or the spill has events to read
	spillBytes  int64             // most bytes of bodies the spill may hold
	secrets     *strings.Replacer // masks the endpoint's own secrets in text it sends back

	mu    sync.Mutex
	live  map[string]*entry // by event id
	lanes map[string]*lane  // by call key
	ready readyHeap
	// size counts the entries in memory against capacity (queue_size):
	// beyond it, events are spilled (spill.go). Entries recovered after a
	// restart are admitted even past a smaller capacity.
	size, capacity int
	freed          chan struct{} // closed and replaced when the spill shrinks
	br             breaker
	disabled       bool
	reason         string // why it is disabled
	failingSince   time.Time
}

func (ep *endpoint) signal() {
	select {
	case ep.wake <- struct{}{}:
	default:
	}
}

// signalRoom wakes the spill reader.
func (ep *endpoint) signalRoom() {
	select {
	case ep.room <- struct{}{}:
	default:
	}
}

// has reports whether the event is already queued for this endpoint.
func (ep *endpoint) has(id string) bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	_, ok := ep.live[id]
	return ok
}

// reserveLocked takes room for one entry in memory, if there is any;
// ep.mu is held.
func (ep *endpoint) reserveLocked() bool {
	if ep.size >= ep.capacity {
		return false
	}
	ep.size++
	return true
}

// admitLocked takes room for a recovered entry without a limit; ep.mu is
// held.
func (ep *endpoint) admitLocked() { ep.size++ }

// freeRoomLocked is how many more entries fit in memory; ep.mu is held.
func (ep *endpoint) freeRoomLocked() int { return max(ep.capacity-ep.size, 0) }

// unreserveLocked gives room back and tells the spill reader; ep.mu is
// held.
func (ep *endpoint) unreserveLocked() {
	ep.size--
	ep.signalRoom()
}

// spillFreedLocked wakes whoever waits for room in the spill; ep.mu is held.
func (ep *endpoint) spillFreedLocked() {
	close(ep.freed)
	ep.freed = make(chan struct{})
}

// enqueueLocked adds e to its call's lane; false if the event is already
// queued here. Room must have been reserved. ep.mu is held.
func (ep *endpoint) enqueueLocked(e *entry) bool {
	if _, dup := ep.live[e.ev.id]; dup {
		return false
	}
	ep.live[e.ev.id] = e
	e.idx = -1
	l := ep.lanes[e.ev.callKey]
	if l == nil {
		l = &lane{key: e.ev.callKey}
		ep.lanes[e.ev.callKey] = l
	}
	e.lane = l
	// Keep the lane sorted by revision, so two revisions handed to Handle
	// concurrently still go out in order, but never displace a head that
	// has already been tried.
	pos := len(l.q)
	for pos > 0 {
		prev := l.q[pos-1]
		if prev.ev.rev < e.ev.rev || (prev.ev.rev == e.ev.rev && prev.ev.order < e.ev.order) {
			break
		}
		if pos == 1 && (prev.inFlight || prev.attempts > 0) {
			break
		}
		pos--
	}
	l.q = append(l.q, nil)
	copy(l.q[pos+1:], l.q[pos:])
	l.q[pos] = e
	if pos == 0 {
		if len(l.q) > 1 && l.q[1].idx >= 0 {
			heap.Remove(&ep.ready, l.q[1].idx)
		}
		heap.Push(&ep.ready, e)
	}
	return true
}

// next returns an entry due now and marks it in flight, or how long to wait
// (0: until signalled).
func (ep *endpoint) next(now time.Time) (*entry, time.Duration) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if len(ep.ready) == 0 {
		return nil, 0
	}
	top := ep.ready[0]
	if top.nextAt.After(now) {
		return nil, top.nextAt.Sub(now)
	}
	if !ep.disabled {
		if ok, wait := ep.br.allow(now); !ok {
			return nil, wait
		}
	}
	heap.Pop(&ep.ready)
	top.inFlight = true
	if len(ep.ready) > 0 && !ep.ready[0].nextAt.After(now) {
		ep.signal() // wake another worker for the next due entry
	}
	return top, 0
}

// removeLocked drops the head entry e after delivery or hand-over to the
// DLQ and makes the next one in its lane due. ep.mu is held.
func (ep *endpoint) removeLocked(e *entry, now time.Time) {
	delete(ep.live, e.ev.id)
	l := e.lane
	if len(l.q) > 0 && l.q[0] == e {
		l.q[0] = nil
		l.q = l.q[1:]
	}
	if len(l.q) == 0 {
		delete(ep.lanes, l.key)
	} else if h := l.q[0]; h.idx < 0 && !h.inFlight {
		if h.nextAt.Before(now) {
			h.nextAt = now
		}
		heap.Push(&ep.ready, h)
	}
	ep.unreserveLocked()
	ep.signal()
}

// requeueLocked puts an in-flight entry back, due at `at`. ep.mu is held.
func (ep *endpoint) requeueLocked(e *entry, at time.Time) {
	e.inFlight = false
	e.nextAt = at
	heap.Push(&ep.ready, e)
	ep.signal()
}

// dueNowLocked makes every waiting entry due now, for a disabled endpoint
// whose entries go to the DLQ without waiting for their retry time. ep.mu
// is held.
func (ep *endpoint) dueNowLocked(now time.Time) {
	for _, e := range ep.ready {
		if e.nextAt.After(now) {
			e.nextAt = now
		}
	}
	heap.Init(&ep.ready)
}
