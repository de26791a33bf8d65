package webhooks

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/callstream/callstream/consumers"
)

// The spill holds an endpoint's events beyond its in-memory queue. Events
// spilled since the last flush are saved by that flush as one chunk per
// endpoint (several when large), under keys of a per-endpoint ring of
// spillRing keys, before the segment or snapshot that references them: a
// chunk is written once and read back when the endpoint's queue has room.
// The log and the snapshot hold only each endpoint's spill index (which
// chunks, how far the first one was read), never the spilled bodies, so a
// snapshot costs the same however long the backlog is.
const spillRing = 1 << 16

// spillChunk is one saved chunk.
type spillChunk struct {
	Ep     string      `json:"ep"`
	Seq    uint64      `json:"seq"`
	Events []snapEvent `json:"events"`
}

// spillIndex locates an endpoint's spilled events. The exported fields are
// saved in snapshots; chunks Head to Tail-1 hold Count events not yet
// moved into memory, Skip of the Head chunk's having been moved already.
type spillIndex struct {
	Ep    string `json:"ep"`
	Head  uint64 `json:"head"`
	Skip  int    `json:"skip,omitempty"`
	Tail  uint64 `json:"tail"`
	Count int    `json:"n"`
	Bytes int64  `json:"bytes"`

	pending      []snapEvent // spilled since the last flush, not saved yet
	pendingBytes int64
	cache        *spillChunk // the Head chunk, once read
}

func (j *journal) chunkKey(ep string, seq uint64) string {
	return fmt.Sprintf("%squeue.spill.%s.%05d", j.prefix, ep, seq%spillRing)
}

// index returns ep's spill index, creating it; j.mu is held.
func (j *journal) index(ep string) *spillIndex {
	x := j.spills[ep]
	if x == nil {
		x = &spillIndex{Ep: ep}
		j.spills[ep] = x
	}
	return x
}

// spilling reports whether ep has spilled events, saved or not: while it
// has, its new events are spilled too, behind them, so they keep their order.
func (j *journal) spilling(ep string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	x := j.spills[ep]
	return x != nil && (x.Count > 0 || len(x.pending) > 0)
}

// spillLen is how many events ep has spilled, saved or not.
func (j *journal) spillLen(ep string) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if x := j.spills[ep]; x != nil {
		return x.Count + len(x.pending)
	}
	return 0
}

// spill adds e to ep's spill if it has room for it (limit bytes of bodies,
// and a free key in the ring); the returned waiter is released when it is
// durable. nil means the spill is full. The caller holds j.state shared.
func (j *journal) spill(ep string, e snapEvent, limit int64) *waiter {
	j.mu.Lock()
	x := j.index(ep)
	size := int64(len(e.Body))
	chunks := (x.pendingBytes+size)/int64(j.partBytes) + 2
	empty := x.Count == 0 && len(x.pending) == 0
	if !empty && (x.Bytes+x.pendingBytes+size > limit || x.Tail-x.Head+uint64(chunks) >= spillRing) {
		j.mu.Unlock()
		return nil
	}
	x.pending = append(x.pending, e)
	x.pendingBytes += size
	j.nSpilled++
	w := j.w
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return w
}

// flushSpill is one flush's share of the spill: the chunks to save and the
// indices as they will be once they are saved.
type flushSpill struct {
	chunks []spillChunk
	ops    []op         // an opChunk per chunk, for the log
	after  []spillIndex // every index with events, chunks included
}

// takeSpillLocked moves every pending spilled event into chunks numbered
// after each index's Tail, without committing them; j.mu is held.
func (j *journal) takeSpillLocked() flushSpill {
	var f flushSpill
	j.nSpilled = 0
	for _, x := range j.spills {
		next := *x
		next.pending, next.cache = nil, nil
		var chunk *spillChunk
		size := 0
		for _, e := range x.pending {
			cost := len(e.Body)*4/3 + 128
			if chunk == nil || (size > 0 && size+cost > j.partBytes) {
				f.chunks = append(f.chunks, spillChunk{Ep: x.Ep, Seq: next.Tail})
				chunk = &f.chunks[len(f.chunks)-1]
				next.Tail++
				size = 0
			}
			chunk.Events = append(chunk.Events, e)
			size += cost
		}
		if len(x.pending) > 0 {
			first := len(f.chunks) - int(next.Tail-x.Tail)
			for _, c := range f.chunks[first:] {
				var b int64
				for _, e := range c.Events {
					b += int64(len(e.Body))
				}
				f.ops = append(f.ops, op{K: opChunk, Ep: c.Ep, Chunk: c.Seq, Count: len(c.Events), Bytes: b})
			}
			next.Count += len(x.pending)
			next.Bytes += x.pendingBytes
		}
		x.pending, x.pendingBytes = nil, 0
		if next.Count > 0 {
			f.after = append(f.after, next)
		}
	}
	return f
}

// saveChunks writes a flush's chunks, all at once (a hanging and a failing
// endpoint spill in every flush: one save each would double or triple
// the flush that the healthy endpoints' batches wait for); it returns the
// bytes written.
func (j *journal) saveChunks(ctx context.Context, f flushSpill) (int, error) {
	entries := make(map[string][]byte, len(f.chunks))
	var names []string
	total := 0
	for _, c := range f.chunks {
		data, err := json.Marshal(c)
		if err != nil {
			return 0, fmt.Errorf("webhooks: encode spilled events of endpoint %q (chunk %d): %w", c.Ep, c.Seq, err)
		}
		entries[j.chunkKey(c.Ep, c.Seq)] = data
		names = append(names, fmt.Sprintf("%s/%d", c.Ep, c.Seq))
		total += len(data)
	}
	if err := consumers.SaveStates(ctx, j.store, entries); err != nil {
		return 0, fmt.Errorf("webhooks: save spilled events (endpoint/chunk %v): %w", names, err)
	}
	return total, nil
}

// commitSpill records that a flush's chunks are durable: they join their
// indices, and whoever reads the spill is told.
func (j *journal) commitSpill(f flushSpill) {
	if len(f.ops) == 0 {
		return
	}
	j.mu.Lock()
	var eps []string
	for _, o := range f.ops {
		x := j.index(o.Ep)
		x.Tail = o.Chunk + 1
		x.Count += o.Count
		x.Bytes += o.Bytes
		if len(eps) == 0 || eps[len(eps)-1] != o.Ep {
			eps = append(eps, o.Ep)
		}
	}
	j.mu.Unlock()
	if j.spilled != nil {
		for _, ep := range eps {
			j.spilled(ep)
		}
	}
}

// dropSpill forgets a failed flush's chunks: their events were not
// acknowledged, so they come again. Whoever waits for room is told.
func (j *journal) dropSpill(f flushSpill) {
	if j.spilled == nil {
		return
	}
	seen := map[string]bool{}
	for _, c := range f.chunks {
		if !seen[c.Ep] {
			seen[c.Ep] = true
			j.spilled(c.Ep)
		}
	}
}

// headChunk returns ep's first saved chunk not read to its end and how many
// of its events were taken already, reading it from the store when it is
// not cached; nil when nothing is saved. It takes no lock while reading.
func (j *journal) headChunk(ctx context.Context, ep string) (*spillChunk, int, error) {
	j.mu.Lock()
	x := j.spills[ep]
	if x == nil || x.Count == 0 {
		j.mu.Unlock()
		return nil, 0, nil
	}
	if x.cache != nil {
		c, skip := x.cache, x.Skip
		j.mu.Unlock()
		return c, skip, nil
	}
	head := x.Head
	j.mu.Unlock()
	data, err := j.store.Load(ctx, j.chunkKey(ep, head))
	if err != nil {
		return nil, 0, fmt.Errorf("webhooks: load spilled events of endpoint %q (chunk %d): %w", ep, head, err)
	}
	var c spillChunk
	if len(data) > 0 {
		if err := json.Unmarshal(data, &c); err != nil {
			return nil, 0, fmt.Errorf("webhooks: decode spilled events of endpoint %q (chunk %d): %w", ep, head, err)
		}
	}
	if len(data) == 0 || c.Seq != head || c.Ep != ep {
		// Never the product of the protocol above: say so, and go on
		// with what follows rather than stop the endpoint for good.
		c = spillChunk{Ep: ep, Seq: head}
		err = fmt.Errorf("webhooks: spilled events of endpoint %q (chunk %d) are missing from the state store", ep, head)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if x.Head != head || x.cache != nil {
		return nil, 0, err // moved on meanwhile; the caller tries again
	}
	x.cache = &c
	return x.cache, x.Skip, err
}

// unspill records that n events of ep's head chunk, bytes of bodies, moved
// into memory, together with ops (their opAdds), atomically in the log.
// The caller holds j.state shared.
func (j *journal) unspill(ep string, n int, bytes int64, ops []op) *waiter {
	j.mu.Lock()
	x := j.index(ep)
	x.Skip += n
	x.Count -= n
	x.Bytes -= bytes
	if x.cache != nil && x.Skip >= len(x.cache.Events) {
		x.Head++
		x.Skip, x.cache = 0, nil
	}
	if x.Count <= 0 || x.Head >= x.Tail {
		// Drained (with a chunk that could not be read, the counts
		// were too high): whatever is before Tail is dead.
		x.Count, x.Bytes, x.Head, x.Skip, x.cache = 0, 0, x.Tail, 0, nil
	}
	ops = append(ops, op{K: opUnspill, Ep: ep, Chunk: x.Head, Skip: x.Skip, Count: n, Bytes: bytes})
	j.ops = append(j.ops, ops...)
	w := j.w
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return w
}

// applySpill replays a spill operation of the log.
func (r *recovered) applySpill(o op) {
	x := r.spills[o.Ep]
	if x == nil {
		x = &spillIndex{Ep: o.Ep, Head: o.Chunk, Tail: o.Chunk}
		r.spills[o.Ep] = x
	}
	switch o.K {
	case opChunk:
		if x.Count == 0 && x.Head == x.Tail {
			x.Head = o.Chunk
		}
		x.Tail = o.Chunk + 1
		x.Count += o.Count
		x.Bytes += o.Bytes
	case opUnspill:
		x.Head, x.Skip = o.Chunk, o.Skip
		x.Count -= o.Count
		x.Bytes -= o.Bytes
		if x.Count <= 0 || x.Head >= x.Tail {
			delete(r.spills, o.Ep)
		}
	}
}
