package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

// ErrBeyondHorizon is returned by Replay for a record created before
// every rung's frontier of its organization: the gate no longer remembers
// what was published for it, so publishing could duplicate or reorder a
// call. Backfill its range instead, which reads back what was published
// first.
var ErrBeyondHorizon = errors.New("producer: record older than the dedup gate remembers")

// ReplayResult is what Replay did with a record.
type ReplayResult struct {
	// Published is false when the gate dropped the record: its call's
	// latest revision has the same content.
	Published bool
	// Revision is the revision published, or the call's latest one.
	Revision int
	// Event is the event published, when Published.
	Event *schemas.CallEvent
}

// recordDecoder is a Source that decodes single records with its own
// status mapping, as *unpod.Client does.
type recordDecoder interface {
	DecodeRecord(raw json.RawMessage) (unpod.Record, error)
}

// Replay runs one raw call log of org, as the API sent it (the payload of
// a producer dead letter), through what a window read does with a record:
// decoding (with the Source's status mapping when it has one, such as
// *unpod.Client, so an extended unpod.status_map now maps it), the size
// check, the dedup gate and publishing to the events topic. It is the hook
// for replaying producer dead letters once the reason is fixed: a record
// that still cannot be decoded returns the decoding error (wrapping
// unpod.ErrUnknownStatus for a status still unknown), one still too large
// an error wrapping schemas.ErrTooLarge, and neither is dead-lettered
// again. A record whose content was published already is dropped, so
// replaying twice publishes once. Replay waits for the organization's
// window read in progress, if any: the gate sees one record at a time. It
// restores the state first when Run has not.
func (p *Producer) Replay(ctx context.Context, org string, raw []byte) (ReplayResult, error) {
	fail := func(err error) (ReplayResult, error) {
		return ReplayResult{}, fmt.Errorf("producer: replay of a record of org %s: %w", org, err)
	}
	if err := p.restore(ctx); err != nil {
		return fail(err)
	}
	var rec unpod.Record
	var err error
	if d, ok := p.deps.Source.(recordDecoder); ok {
		rec, err = d.DecodeRecord(raw)
	} else {
		rec, err = unpod.DecodeRecord(raw)
	}
	if err != nil {
		return fail(err)
	}
	p.mu.Lock()
	cp := p.cps[org]
	var low time.Time
	if cp != nil {
		low = cp.Low()
	}
	p.mu.Unlock()
	if cp == nil || rec.CreationTime.Before(low) {
		return fail(fmt.Errorf("%w: created %s, the gate remembers from %s", ErrBeyondHorizon,
			rec.CreationTime.Format(time.RFC3339Nano), low.Format(time.RFC3339Nano)))
	}
	defer p.lockOrg(org)()
	if err := p.resyncIfNeeded(ctx, org); err != nil {
		return fail(err)
	}
	id := Identify(org, &rec)
	key := keyOf(org, id.CallKey)
	d := p.mem.check(key, id.hash)
	if !d.Publish {
		p.dups.Add(1)
		p.m.duplicates.WithLabelValues(org).Inc()
		return ReplayResult{Revision: d.Revision}, nil
	}
	e := NewEvent(org, &rec, id, d.Revision, p.now())
	msg := newMessage(&e, schemas.Source(org), e.ObservedAt.Format(time.RFC3339Nano), nil)
	if n := messageSize(msg); n > p.cfg.MaxMessageBytes {
		return fail(fmt.Errorf("%w: its event is %d bytes, over producer.max_message_bytes %d", schemas.ErrTooLarge, n, p.cfg.MaxMessageBytes))
	}
	acked, refused, err := p.publishEvents(ctx, org, []outgoing{{event: &e, msg: msg, rec: &rec, id: id, key: key}})
	if err != nil {
		return fail(err)
	}
	if len(refused) > 0 {
		return fail(fmt.Errorf("%w: the bus refused its event", schemas.ErrTooLarge))
	}
	p.commit(org, acked)
	return ReplayResult{Published: true, Revision: d.Revision, Event: &e}, nil
}
