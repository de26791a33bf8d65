package kafkabus

import (
	"sort"
	"sync"

	"github.com/segmentio/kafka-go"
)

// commitTracker decides which offsets may be committed when messages are
// acked out of order. Per partition it keeps the fetched-but-uncommitted
// messages in fetch order; only the prefix of that queue whose messages are
// all acked becomes committable, so a commit never passes an unacked
// message. Contiguity is by fetch order, not offset+1, because compaction
// and transaction markers leave gaps in offsets.
type commitTracker struct {
	mu    sync.Mutex
	parts map[int]*partitionQueue
}

type partitionQueue struct {
	entries []trackedEntry // entries[head:] are tracked; ascending offsets, in fetch order
	head    int
	// ready is the highest message of the acked prefix not yet handed to
	// commit, when hasReady; a value, not a pointer, since every ack
	// moves it.
	ready    kafka.Message
	hasReady bool
	readyN   int // messages covered by ready
}

// trackedEntry is kept small on purpose: an ack touches O(log n) of them
// and compaction copies them.
type trackedEntry struct {
	offset int64
	acked  bool
}

func newCommitTracker() *commitTracker {
	return &commitTracker{parts: map[int]*partitionQueue{}}
}

// add records a fetched message. A message at or below the last tracked
// offset of its partition means the consumer group rewound the partition
// (a rebalance handed it back from the committed offset): the old entries
// are dropped, since every one of them is fetched again.
func (t *commitTracker) add(m kafka.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.parts[m.Partition]
	if q == nil {
		q = &partitionQueue{}
		t.parts[m.Partition] = q
	}
	if n := len(q.entries); n > q.head && m.Offset <= q.entries[n-1].offset {
		q.entries, q.head = q.entries[:0], 0
	}
	if q.head > 0 && q.head >= len(q.entries)/2 {
		// Compact so the slice does not grow without bound.
		q.entries = q.entries[:copy(q.entries, q.entries[q.head:])]
		q.head = 0
	}
	q.entries = append(q.entries, trackedEntry{offset: m.Offset})
}

// ack marks a message as processed and reports whether that made a new
// offset committable. An ack for a message no longer tracked (dropped by a
// rewind) changes nothing.
func (t *commitTracker) ack(m kafka.Message) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.parts[m.Partition]
	if q == nil {
		return false
	}
	live := q.entries[q.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].offset >= m.Offset })
	if i == len(live) || live[i].offset != m.Offset {
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
	q.ready, q.hasReady = kafka.Message{Topic: m.Topic, Partition: m.Partition, Offset: live[n-1].offset}, true
	q.readyN += n
	q.head += n
	return true
}

// take returns the committable message of every partition that has one
// (the caller commits msg.Offset+1) and the number of messages they cover,
// and forgets them.
func (t *commitTracker) take() ([]kafka.Message, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []kafka.Message
	total := 0
	for _, q := range t.parts {
		if q.hasReady {
			out = append(out, q.ready)
			total += q.readyN
			q.ready, q.hasReady, q.readyN = kafka.Message{}, false, 0
		}
	}
	return out, total
}

// putBack returns messages whose commit failed, unless a later offset of
// the same partition became committable meanwhile.
func (t *commitTracker) putBack(msgs []kafka.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		q := t.parts[m.Partition]
		if q == nil {
			continue
		}
		if !q.hasReady {
			q.ready, q.hasReady = m, true
		}
	}
}
