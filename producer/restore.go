package producer

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// resyncIfNeeded reads back what a failed publish of org may have written.
func (p *Producer) resyncIfNeeded(ctx context.Context, org string) error {
	p.mu.Lock()
	need := p.resync[org]
	p.mu.Unlock()
	if !need || p.deps.EventLog == nil {
		return nil
	}
	n, err := p.readBackOrg(ctx, org)
	if err != nil {
		return fmt.Errorf("%w: reading back %s after a failed publish: %v", errPublish, p.deps.Topic, err)
	}
	p.log.Info("read back the events topic after a failed publish", "org", org, "events", n)
	p.mu.Lock()
	delete(p.resync, org)
	p.mu.Unlock()
	return nil
}

// readBackOrg reads the events topic back from org's latest sample (or
// from the start, without one) into the memory.
func (p *Producer) readBackOrg(ctx context.Context, org string) (int, error) {
	p.mu.Lock()
	var from map[int]int64
	if cp := p.cps[org]; cp != nil && len(cp.Samples) > 0 {
		from = cp.Samples[len(cp.Samples)-1].Offsets
	}
	p.mu.Unlock()
	return p.readBack(ctx, from, "")
}

// restore loads the saved state and rebuilds the dedup memory: from the
// state itself in embedded mode, from the events topic with Kafka. Calling
// it again does nothing.
func (p *Producer) restore(ctx context.Context) error {
	if p.restored {
		return nil
	}
	st, err := p.deps.Store.Load(ctx)
	if err != nil {
		return err
	}
	p.mu.Lock()
	for org, cp := range st.Orgs {
		cp.align(p.cfg.RescanAges, cp.Low())
		if err := p.dead.decode(org, cp.DeadLetters); err != nil {
			p.mu.Unlock()
			return err
		}
		cp.DeadLetters = nil // kept in p.dead, added back at every save
		p.cps[org] = cp
	}
	p.mu.Unlock()
	if p.deps.EventLog == nil {
		switch {
		case len(st.Memory) > 0 && st.MemoryVersion != memoryVersion:
			// Version 1 remembered event-id prefixes, which cannot be
			// turned into content hashes: the calls of the rescan horizon
			// are published once more, with the new event ids.
			p.log.Warn("the saved dedup memory is from an older version and is dropped; calls within the rescan horizon are published again once",
				"memory_version", st.MemoryVersion, "want", memoryVersion)
		case len(st.Memory) > 0:
			if err := p.mem.UnmarshalBinary(st.Memory); err != nil {
				return fmt.Errorf("producer: state memory: %w", err)
			}
		}
		p.restored = true
		p.m.remembered.Set(float64(p.mem.Len()))
		return nil
	}
	from := minOffsets(nil, st.Offsets)
	for _, cp := range st.Orgs {
		from = minOffsets(from, cp.restoreFrom())
	}
	if from != nil {
		start := time.Now()
		n, err := p.readBack(ctx, from, "")
		if err != nil {
			return fmt.Errorf("producer: rebuild dedup memory from %s: %w", p.deps.Topic, err)
		}
		p.log.Info("dedup memory rebuilt from the events topic", "events", n, "remembered_calls", p.mem.Len(),
			"took", time.Since(start).Round(time.Millisecond).String())
	}
	p.restored = true
	p.m.remembered.Set(float64(p.mem.Len()))
	return nil
}

// minOffsets merges b into a, keeping the lower offset of each partition.
func minOffsets(a, b map[int]int64) map[int]int64 {
	if b == nil {
		return a
	}
	out := make(map[int]int64, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if cur, ok := out[k]; !ok || v < cur {
			out[k] = v
		}
	}
	return out
}

// readBack feeds the events from offsets from to the end into the memory.
// Events of other organizations are skipped when only is set. (Spreading
// the scanning over workers was measured: no faster on the shared 2-core
// machine, so it stays in ReadFrom's callback.)
func (p *Producer) readBack(ctx context.Context, from map[int]int64, only string) (int, error) {
	var n atomic.Int64
	var e topicEntry // scratch: ReadFrom calls fn from one goroutine at a time
	err := p.deps.EventLog.ReadFrom(ctx, from, func(value []byte) error {
		if p.restoreEvent(value, only, &e) {
			n.Add(1)
		}
		return nil
	})
	p.m.restoredCalls.Add(float64(n.Load()))
	return int(n.Load()), err
}

// restoreEvent adds one event of the topic to the memory, using e as
// scratch, and reports whether it did.
func (p *Producer) restoreEvent(value []byte, only string, e *topicEntry) bool {
	if !scanEvent(value, e) {
		if err := decodeEntry(value, e); err != nil {
			p.log.Warn("skipping a record of the events topic that is not a call event", "err", err.Error())
			return false
		}
	}
	c := &e.content
	if len(c.org) == 0 || len(c.callKey) == 0 || e.revision < 1 {
		p.log.Warn("skipping a call event without a usable identity", "event_id", string(e.eventID), "org", string(c.org), "call_key", string(c.callKey))
		return false
	}
	if only != "" && string(c.org) != only {
		return false
	}
	// The value has every normalised field: the content hash it was
	// published with is recomputed from it, not carried.
	if p.mem.commit(keyOf(c.org, c.callKey), memEntry{hash: c.hash(), revision: uint32(e.revision), minute: unixMinute(c.creation)}) {
		auditPublished(p, c.org, c.creation)
	}
	return true
}

// save writes the checkpoint if it changed since the last save. With
// Kafka, the end offsets are read before the checkpoints are copied, so
// every event published after the offsets belongs to a window the saved
// checkpoint does not count as read.
func (p *Producer) save(ctx context.Context) error {
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	return p.saveLocked(ctx)
}

// saveLocked is save with saveMu held.
func (p *Producer) saveLocked(ctx context.Context) error {
	p.mu.Lock()
	dirty := p.dirty
	p.mu.Unlock()
	if !dirty {
		return nil
	}
	st := &State{Version: stateVersion, SavedAt: p.now()}
	if p.deps.EventLog != nil {
		offs, err := p.deps.EventLog.EndOffsets(ctx)
		if err != nil {
			p.m.stateSaves.WithLabelValues("error").Inc()
			return fmt.Errorf("producer: end offsets for the state: %w", err)
		}
		st.Offsets = offs
	}
	p.mu.Lock()
	st.Orgs = make(map[string]*Checkpoint, len(p.cps))
	for org, cp := range p.cps {
		c := cp.clone()
		c.DeadLetters = p.dead.encode(org)
		st.Orgs[org] = c
	}
	p.dirty = false
	p.mu.Unlock()
	if p.deps.EventLog == nil {
		mem, err := p.mem.MarshalBinary()
		if err != nil {
			return err
		}
		st.Memory, st.MemoryVersion = mem, memoryVersion
	}
	if err := p.deps.Store.Save(ctx, st); err != nil {
		p.mu.Lock()
		p.dirty = true
		p.mu.Unlock()
		p.m.stateSaves.WithLabelValues("error").Inc()
		return err
	}
	p.m.stateSaves.WithLabelValues("ok").Inc()
	return nil
}

// evict forgets calls below every organization's lowest frontier, and each
// organization's dead-letter marks of windows below its own: no rung reads
// them again.
func (p *Producer) evict() {
	p.mu.Lock()
	var low time.Time
	for org, cp := range p.cps {
		l := cp.Low()
		if low.IsZero() || l.Before(low) {
			low = l
		}
		p.dead.evict(org, unixMinute(l.Add(-time.Minute)))
	}
	p.mu.Unlock()
	if low.IsZero() {
		return
	}
	if n := p.mem.Evict(low.Add(-time.Minute)); n > 0 {
		p.log.Debug("forgot calls older than the rescan horizon", "calls", n, "before", low)
	}
	p.m.remembered.Set(float64(p.mem.Len()))
}
