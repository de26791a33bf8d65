package sqlitebus

import (
	"sort"
	"sync"
)

// tracker decides which offset a consumer group may commit when messages
// are acked out of order (the idea of kafkabus's commitTracker, for one
// partition). It keeps the delivered-but-uncommitted offsets in delivery
// order, which is offset order; only the prefix of that queue whose
// messages are all acked becomes committable, so a commit never passes an
// unacked message. Contiguity is by delivery order, not offset+1: retention
// may leave the log starting past the group's committed offset.
type tracker struct {
	mu      sync.Mutex
	entries []trackedOffset // entries[head:] are tracked, ascending
	head    int
	ready   int64 // offset to commit (last of the acked prefix + 1); valid if readyN > 0
	readyN  int   // messages covered by ready
}

type trackedOffset struct {
	offset int64
	acked  bool
}

// add records a delivered offset; offsets must come in ascending order.
func (t *tracker) add(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.head > 0 && t.head >= len(t.entries)/2 {
		// Compact so the slice does not grow without bound.
		t.entries = t.entries[:copy(t.entries, t.entries[t.head:])]
		t.head = 0
	}
	t.entries = append(t.entries, trackedOffset{offset: offset})
}

// ack marks an offset processed and reports whether that made a new offset
// committable. An offset not tracked changes nothing.
func (t *tracker) ack(offset int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	live := t.entries[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].offset >= offset })
	if i == len(live) || live[i].offset != offset {
		return false
	}
	live[i].acked = true
	n := 0
	for n < len(live) && live[n].acked {
		n++
	}
	if n == 0 {
		return false
	}
	t.ready = live[n-1].offset + 1
	t.readyN += n
	t.head += n
	return true
}

// take returns the offset to commit and how many messages it covers, and
// forgets it; ok is false when nothing new is committable.
func (t *tracker) take() (offset int64, n int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.readyN == 0 {
		return 0, 0, false
	}
	offset, n = t.ready, t.readyN
	t.readyN = 0
	return offset, n, true
}

// putBack returns an offset whose commit failed, unless a later one became
// committable meanwhile.
func (t *tracker) putBack(offset int64, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.readyN == 0 {
		t.ready, t.readyN = offset, n
		return
	}
	t.readyN += n // ready is later and covers these too
}
