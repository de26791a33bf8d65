package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// Handle queues one event; it is HandleBatch with a batch of one.
func (p *Plugin) Handle(ctx context.Context, d consumers.Delivery) error {
	err := p.HandleBatch(ctx, []consumers.Delivery{d})
	var items *consumers.ItemErrors
	if errors.As(err, &items) {
		return (*items)[0]
	}
	return err
}

// pendingItem is one event of a batch still to be placed for some
// endpoints.
type pendingItem struct {
	ev      *event
	targets []*endpoint
}

// HandleBatch durably queues each event of the batch for every endpoint
// whose filter matches (a replayed event only for the endpoint it names),
// then returns; delivery happens in the background. The whole batch costs
// one state save. An endpoint's queue beyond queue_size spills to the
// state store instead of blocking, so a slow endpoint never holds up the
// others; only a full spill (spill_bytes) makes HandleBatch wait. It
// returns once every queue change is saved, so an acknowledged event is
// never lost; an event already queued for an endpoint is not queued twice.
// Events at fault get an item error in a *consumers.ItemErrors.
func (p *Plugin) HandleBatch(ctx context.Context, batch []consumers.Delivery) error {
	select {
	case <-p.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	bad := consumers.ItemErrors{}
	items := make([]pendingItem, 0, len(batch))
	requeued := false // some event was queued by an earlier, unfinished call
	for i := range batch {
		it, again, err := p.prepare(&batch[i])
		if err != nil {
			bad[i] = err
			continue
		}
		requeued = requeued || again
		if len(it.targets) > 0 {
			items = append(items, it)
		}
	}
	waiters := map[*waiter]bool{}
	if requeued {
		// Queued by an earlier call whose save may not be done (or
		// failed): the next save covers it.
		waiters[p.journal.pending()] = true
	}
	warned := false
	for len(items) > 0 {
		var (
			full  *endpoint
			freed <-chan struct{}
		)
		items, full, freed = p.place(items, waiters)
		if full == nil {
			break
		}
		if !warned { // once a batch, not at every wake-up
			warned = true
			p.log.Warn("webhooks: endpoint's spill is full; waiting for it to drain (back-pressure)", "endpoint", full.name,
				"spilled", p.journal.spillLen(full.name), "spill_bytes", full.spillBytes)
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for w := range waiters {
		if err := w.wait(ctx); err != nil {
			// The state store is at fault, not the events: the runtime
			// retries for as long as it takes and never dead-letters
			// them for this.
			return consumers.Transient(fmt.Errorf("webhooks: queue %d events durably: %w", len(batch), err))
		}
	}
	if len(bad) > 0 {
		return &bad
	}
	return nil
}

// prepare finds the endpoints an event is to be queued for, leaving out
// those that hold it already (again reports that some did).
func (p *Plugin) prepare(d *consumers.Delivery) (it pendingItem, again bool, err error) {
	ev := &d.Event
	if ev.EventID == "" {
		return it, false, consumers.Permanent(errors.New("webhooks: event has no event_id"))
	}
	candidates := p.endpoints
	replay := d.Metadata(schemas.ReplayEndpointMetadata)
	if replay != "" {
		// A replay of what one endpoint failed goes to that endpoint
		// alone; its filter chose the event when it first came.
		ep := p.byName[replay]
		if ep == nil {
			return it, false, consumers.Permanent(fmt.Errorf(
				"webhooks: replayed event %s names endpoint %q, which is not in the configuration", ev.EventID, replay))
		}
		candidates = []*endpoint{ep}
	}
	var targets []*endpoint
	for _, ep := range candidates {
		if replay == "" && !ep.filter.matches(ev.Type(), ev.CallStatus, ev.CallType, ev.Org) {
			continue
		}
		if ep.has(ev.EventID) {
			again = true
		} else {
			targets = append(targets, ep)
		}
	}
	if len(targets) == 0 {
		return it, again, nil
	}
	var body []byte
	if len(d.Payload) > 0 {
		body = d.Payload
	} else if body, err = json.Marshal(ev); err != nil {
		return it, false, consumers.Permanent(fmt.Errorf("webhooks: encode event %s: %w", ev.EventID, err))
	}
	e := &event{id: ev.EventID, callKey: ev.CallKey, rev: ev.Revision, order: p.order.Add(1), body: body}
	if d.HasPosition {
		e.pos = position{topic: d.Position.Topic, part: d.Position.Partition, off: d.Position.Offset, hasPos: true}
	}
	return pendingItem{ev: e, targets: targets}, again, nil
}

// place queues what it can of items, in order, with one log append: an
// event goes into an endpoint's memory while it has room and nothing
// spilled, else into its spill. It returns the items left for an endpoint
// whose spill is full (that endpoint, and everything after the first item
// it refused, keeps its order by waiting) with a channel closed when that
// spill shrinks, and adds the waiters to wait for.
func (p *Plugin) place(items []pendingItem, waiters map[*waiter]bool) (left []pendingItem, full *endpoint, freed <-chan struct{}) {
	now := p.now()
	blocked := map[*endpoint]bool{}
	touched := map[*endpoint]bool{}
	var ops []op
	p.state.RLock()
	for _, it := range items {
		var inMemory []string
		var rest []*endpoint
		for _, ep := range it.targets {
			if blocked[ep] {
				rest = append(rest, ep)
				continue
			}
			ep.mu.Lock()
			switch {
			case ep.live[it.ev.id] != nil:
				// Queued by an earlier item of this batch.
			case !p.journal.spilling(ep.name) && ep.reserveLocked():
				if ep.enqueueLocked(&entry{ev: it.ev, nextAt: now}) {
					inMemory = append(inMemory, ep.name)
					touched[ep] = true
				} else {
					ep.unreserveLocked()
				}
			default:
				if w := p.journal.spill(ep.name, it.ev.snap(), ep.spillBytes); w != nil {
					waiters[w] = true
					touched[ep] = true
				} else {
					blocked[ep] = true
					full, freed = ep, ep.freed
					rest = append(rest, ep)
				}
			}
			ep.mu.Unlock()
		}
		if len(inMemory) > 0 {
			ev := it.ev
			ops = append(ops, op{K: opAdd, ID: ev.id, CallKey: ev.callKey, Rev: ev.rev, Order: ev.order, Body: ev.body,
				Eps: inMemory, Topic: ev.pos.topic, Part: ev.pos.part, Off: ev.pos.off, HasPos: ev.pos.hasPos})
			for _, name := range inMemory {
				p.metrics.queued.WithLabelValues(name).Inc()
			}
		}
		if len(rest) > 0 {
			left = append(left, pendingItem{ev: it.ev, targets: rest})
		}
	}
	if len(ops) > 0 {
		waiters[p.journal.append(ops...)] = true
	}
	p.state.RUnlock()
	for ep := range touched {
		ep.signal()
		p.metrics.spilled.WithLabelValues(ep.name).Set(float64(p.journal.spillLen(ep.name)))
	}
	return left, full, freed
}

// refill is an endpoint's spill reader: while the endpoint has spilled
// events and room in memory, it moves the oldest ones there, so memory
// holds at most queue_size entries (and one chunk read ahead) however long
// the backlog.
func (p *Plugin) refill(ctx context.Context, ep *endpoint) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for ctx.Err() == nil {
		progressed, err := p.refillOnce(ctx, ep)
		if err != nil && ctx.Err() == nil {
			p.log.Error("webhooks: reading spilled events failed; trying again", "endpoint", ep.name, "err", err)
			retry.Reset(time.Second)
			select {
			case <-ctx.Done():
			case <-retry.C:
			}
			continue
		}
		if progressed {
			continue
		}
		select {
		case <-ctx.Done():
		case <-ep.room:
		}
	}
}

// refillOnce moves what fits of the spill's first chunk into memory and
// reports whether it got anywhere.
func (p *Plugin) refillOnce(ctx context.Context, ep *endpoint) (bool, error) {
	ep.mu.Lock()
	room := ep.freeRoomLocked()
	ep.mu.Unlock()
	if room == 0 {
		return false, nil
	}
	chunk, skip, err := p.journal.headChunk(ctx, ep.name)
	if chunk == nil {
		return false, err
	}
	if err != nil {
		// The chunk is missing: it counts as read, loudly.
		p.log.Error("webhooks: spilled events lost", "endpoint", ep.name, "err", err)
	}
	now := p.now()
	p.state.RLock()
	ep.mu.Lock()
	n := max(min(ep.freeRoomLocked(), len(chunk.Events)-skip), 0)
	var (
		ops   []op
		bytes int64
		moved int
	)
	for i := skip; i < skip+n; i++ {
		se := &chunk.Events[i]
		bytes += int64(len(se.Body))
		ev := eventOf(se)
		if ep.live[ev.id] != nil {
			continue // queued again meanwhile (a replay): queued once
		}
		ep.admitLocked()
		ep.enqueueLocked(&entry{ev: ev, nextAt: now})
		moved++
		ops = append(ops, op{K: opAdd, ID: se.ID, CallKey: se.CallKey, Rev: se.Rev, Order: se.Order, Body: se.Body,
			Eps: []string{ep.name}, Topic: se.Topic, Part: se.Part, Off: se.Off, HasPos: se.HasPos})
	}
	progressed := n > 0 || len(chunk.Events) <= skip
	if progressed {
		p.journal.unspill(ep.name, n, bytes, ops)
		ep.spillFreedLocked()
	}
	ep.mu.Unlock()
	p.state.RUnlock()
	if moved > 0 {
		p.metrics.queued.WithLabelValues(ep.name).Add(float64(moved))
		ep.signal()
	}
	p.metrics.spilled.WithLabelValues(ep.name).Set(float64(p.journal.spillLen(ep.name)))
	return progressed, nil
}
