package alerting

import (
	"container/heap"
	"time"
)

// sourceKey names one watermark source: an org on an input partition.
// A struct key keeps the per-event lookup free of allocations.
type sourceKey struct {
	partition, org string
}

// sourceMark is one source's progress.
type sourceMark struct {
	high     int64 // newest creation_time seen
	lastSeen time.Time
	pos      int // index in the live heap; -1 while out of it (idle)
}

// sourceHeap orders the live sources by high, lowest first. The watermark
// is the lowest high of the sources not idle, so keeping them in a heap
// makes it O(log n) per call instead of a walk over every source: with a
// thousand orgs that walk was nine tenths of the evaluator's time.
//
// Idle sources leave the heap lazily: only when one is at the top (it
// would be the minimum) is it checked and popped. One that delivers again
// is pushed back. So the top is always the minimum over the sources that
// are not idle, which is what a walk over all of them would find.
type sourceHeap []*sourceMark

func (h sourceHeap) Len() int           { return len(h) }
func (h sourceHeap) Less(i, j int) bool { return h[i].high < h[j].high }
func (h sourceHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}

func (h *sourceHeap) Push(x any) {
	s := x.(*sourceMark)
	s.pos = len(*h)
	*h = append(*h, s)
}

func (h *sourceHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.pos = -1
	return s
}

// seen records an arrival from s at wall time now, putting s back among
// the live sources if it had gone idle.
func (h *sourceHeap) seen(s *sourceMark, now time.Time) {
	s.lastSeen = now
	if s.pos < 0 {
		heap.Push(h, s)
	}
}

// raise moves s's high up to t.
func (h *sourceHeap) raise(s *sourceMark, t int64) {
	s.high = t
	if s.pos >= 0 {
		heap.Fix(h, s.pos)
	}
}

// lowest returns the lowest high of the sources that delivered within
// idle of now, popping idle ones off the top; ok is false when every
// source is idle.
func (h *sourceHeap) lowest(now time.Time, idle time.Duration) (high int64, ok bool) {
	for h.Len() > 0 {
		top := (*h)[0]
		if now.Sub(top.lastSeen) < idle {
			return top.high, true
		}
		heap.Pop(h)
	}
	return 0, false
}
