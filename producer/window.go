package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

// minPageSize is the floor of the page-size fallback: a page of one
// record that is still over the client's body limit fails the window
// (raise unpod.max_body_bytes).
const minPageSize = 1

// readWindow reads w until its count stays the same while paging and
// every record it counts was seen, at most MaxWindowReads times. A page
// over the API client's body limit (unpod.ErrBodyTooLarge) makes it read
// the window again in pages half as large, down to minPageSize, without
// counting that as a read: one page of unusually large records never
// stops the organization.
func (p *Producer) readWindow(ctx context.Context, org string, w Window) error {
	defer p.lockOrg(org)()
	size := p.cfg.PageSize
	for attempt := 1; ; {
		ok, err := p.readOnce(ctx, org, w, size)
		if errors.Is(err, unpod.ErrBodyTooLarge) && size > minPageSize {
			size = max(size/2, minPageSize)
			p.m.windows.WithLabelValues(org, "smaller_pages").Inc()
			p.log.Warn("a page was larger than the API client reads; reading the window in smaller pages",
				"org", org, "start", w.Start, "end", w.End, "page_size", size, "err", err.Error())
			continue
		}
		if err != nil {
			return err
		}
		if ok {
			p.m.windows.WithLabelValues(org, "complete").Inc()
			return nil
		}
		if attempt >= p.cfg.MaxWindowReads {
			p.m.windows.WithLabelValues(org, "inconsistent").Inc()
			p.log.Warn("window kept changing while paging; accepted, the rescan ladder reads it again later",
				"org", org, "start", w.Start, "end", w.End, "rung_age", p.cfg.RescanAges[w.Rung].String(), "reads", attempt)
			return nil
		}
		p.m.windows.WithLabelValues(org, "reread").Inc()
		attempt++
	}
}

// lockOrg serialises the gate of one organization: its window reads and
// Replay. It returns the unlock.
func (p *Producer) lockOrg(org string) func() {
	p.mu.Lock()
	l, ok := p.orgLocks[org]
	if !ok {
		l = &sync.Mutex{}
		p.orgLocks[org] = l
	}
	p.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// Pipelining of a window read: pages are fetched and their records
// identified ahead of the one going through the gate, and batches are
// encoded and published while the next page goes through it. Only the gate
// runs one page at a time, in page order: a call is taken once per read
// (seen), and the window is finished only when every batch was
// acknowledged. Batches are published one at a time: two in flight could
// reach a partition in either order, and the window's oldest-first order
// (see readOnce) would be lost at page boundaries.
const (
	fetchAhead   = 3
	publishAhead = 1
)

// fetched is a page with the identity of each of its records.
type fetched struct {
	page *unpod.Page
	ids  []Identity
	keys []memKey
	err  error
}

func identifyPage(org string, pg *unpod.Page) fetched {
	f := fetched{page: pg, ids: make([]Identity, len(pg.Records)), keys: make([]memKey, len(pg.Records))}
	for i := range pg.Records {
		f.ids[i] = Identify(org, &pg.Records[i])
		f.keys[i] = keyOf(org, f.ids[i].CallKey)
	}
	return f
}

// readOnce reads every page of w once with pages of size records,
// publishing as it goes, and reports whether the read was consistent:
// count the same on every page and every counted record seen or
// dead-lettered. A page past the end of the data (unpod.ErrPastLastPage:
// the count shrank after page 1) ends the read as inconsistent.
func (p *Producer) readOnce(ctx context.Context, org string, w Window, size int) (bool, error) {
	q := unpod.Query{Org: org, Page: 1, PageSize: size, Start: w.Start, End: w.End}
	wrap := func(page int, err error) error {
		return fmt.Errorf("producer: org %s window [%s, %s) page %d: %w",
			org, w.Start.Format(time.RFC3339Nano), w.End.Format(time.RFC3339Nano), page, err)
	}
	p.act.add(org, 1, 0)
	first, err := p.deps.Source.CallLogs(ctx, q)
	if err != nil {
		return false, wrap(1, err)
	}
	// A server that clamps page_size shows it on page 1.
	if n := len(first.Records) + len(first.Invalid); n > 0 && n < q.PageSize && first.Count > n {
		q.PageSize = n
	}
	pages := max(1, (first.Count+q.PageSize-1)/q.PageSize)

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The API lists newest first. Pages are read last to first (page 1,
	// read above for the count, is gated last) and each page backwards, so
	// a window is published oldest first: consumers on event time (the
	// alerting watermark) see a catch-up window in order instead of counting
	// most of it as late. A record that a page shift moves between two
	// pages during the read changes count, so the window is read again.
	ahead := make(chan chan fetched, fetchAhead-1)
	go func() {
		defer close(ahead)
		for page := pages; page >= 2; page-- {
			ch := make(chan fetched, 1)
			select {
			case ahead <- ch:
			case <-fctx.Done():
				return
			}
			go func() {
				qq := q
				qq.Page = page
				p.act.add(org, 1, 0)
				pg, err := p.deps.Source.CallLogs(fctx, qq)
				if err != nil {
					ch <- fetched{err: wrap(page, err)}
					return
				}
				ch <- identifyPage(org, pg)
			}()
		}
	}()

	pub := p.newPublishQueue(ctx, org)
	seen := map[string]struct{}{}
	seenDead := map[uint64]struct{}{}
	last, accounted, changed := first.Count, 0, false
	handle := func(f fetched) {
		pg := f.page
		if pg.Count != last {
			changed = true
		}
		last = pg.Count
		n := len(pg.Records) + len(pg.Invalid)
		p.read.Add(int64(n))
		p.m.recordsRead.WithLabelValues(org).Add(float64(n))
		p.invalid.Add(int64(len(pg.Invalid)))
		p.m.invalid.WithLabelValues(org).Add(float64(len(pg.Invalid)))
		b, dead := p.gate(org, w, f, seen, seenDead)
		accounted += dead
		pub.submit(b)
		if p.pageHook != nil {
			p.pageHook(n)
		}
	}
	for ch := range ahead {
		f := <-ch
		if f.err != nil {
			cancel()
			perr := pub.wait()
			if perr == nil && errors.Is(f.err, unpod.ErrPastLastPage) {
				// The data ended before page 1's count said: read again.
				p.log.Info("a page past the end of the data: the count shrank while paging; the window is read again",
					"org", org, "start", w.Start, "end", w.End, "err", f.err.Error())
				return false, nil
			}
			if perr != nil {
				return false, perr
			}
			return false, f.err
		}
		handle(f)
		if pub.failed() {
			break
		}
	}
	if !pub.failed() {
		handle(identifyPage(org, first))
	}
	if err := pub.wait(); err != nil {
		return false, err
	}
	return !changed && len(seen)+accounted >= last, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// batch is what passed the gate from one page.
type batch struct {
	recs      []*unpod.Record
	ids       []Identity
	keys      []memKey
	revisions []int
	dead      []deadLetter
	window    Window
	observed  time.Time
}

// gate runs a page's records through the dedup memory and the edge's
// checks. seen holds the call keys of the current read, so a record
// repeated by a page shift is taken once; seenDead does the same for dead
// letters. It returns the batch to publish (nil when empty) and how many
// records are accounted for as dead letters, new or remembered.
func (p *Producer) gate(org string, w Window, f fetched, seen map[string]struct{}, seenDead map[uint64]struct{}) (*batch, int) {
	pg := f.page
	b := &batch{observed: p.now(), window: w}
	minute := unixMinute(w.End)
	accounted := 0
	dead := func(dl deadLetter) {
		accounted++
		dl.mark = markOf(org, dl.raw)
		if _, dup := seenDead[dl.mark]; dup {
			return
		}
		seenDead[dl.mark] = struct{}{}
		if !p.dead.seen(org, dl.mark, minute) {
			b.dead = append(b.dead, dl)
		}
	}
	for _, bad := range pg.Invalid {
		dl := deadLetter{raw: bad.Raw, kind: kindUndecodable, reason: bad.Err.Error()}
		if s, ok := unpod.UnknownStatus(bad.Err); ok {
			dl.kind, dl.detail = kindUnknownStatus, strings.ToLower(strings.TrimSpace(s))
		}
		dead(dl)
	}
	recs := pg.Records
	dups := 0
	for i := len(recs) - 1; i >= 0; i-- { // oldest first, see readOnce
		r, id := &recs[i], &f.ids[i]
		if r.CreationTime.Before(w.Start) || !r.CreationTime.Before(w.End) {
			dead(deadLetter{raw: r.Raw, kind: kindOutsideWindow, callKey: id.CallKey, reason: fmt.Sprintf(
				"creation_time %s is outside the window [%s, %s) the API served it for", r.CreationTime.Format(time.RFC3339Nano),
				w.Start.Format(time.RFC3339Nano), w.End.Format(time.RFC3339Nano))})
			continue
		}
		if _, dup := seen[id.CallKey]; dup {
			continue
		}
		seen[id.CallKey] = struct{}{}
		// A record large enough that its event may be over the limit was
		// perhaps dead-lettered as too large already.
		if len(r.Raw) >= p.cfg.MaxMessageBytes/3 && p.dead.seen(org, markOf(org, r.Raw), minute) {
			continue
		}
		d := p.mem.check(f.keys[i], id.hash)
		if !d.Publish {
			dups++
			continue
		}
		b.recs = append(b.recs, r)
		b.ids = append(b.ids, *id)
		b.keys = append(b.keys, f.keys[i])
		b.revisions = append(b.revisions, d.Revision)
	}
	p.dups.Add(int64(dups))
	p.m.duplicates.WithLabelValues(org).Add(float64(dups))
	if len(b.recs) == 0 && len(b.dead) == 0 {
		return nil, accounted
	}
	return b, accounted
}

// publishQueue publishes the batches of one window read, up to
// publishAhead at a time, and keeps the first error.
type publishQueue struct {
	ctx context.Context
	p   *Producer
	org string
	sem chan struct{}
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

func (p *Producer) newPublishQueue(ctx context.Context, org string) *publishQueue {
	return &publishQueue{ctx: ctx, p: p, org: org, sem: make(chan struct{}, publishAhead)}
}

func (q *publishQueue) submit(b *batch) {
	if b == nil || q.failed() {
		return
	}
	// The batch is encoded now, while the one before it is being
	// published; publishing itself stays one batch at a time, in order.
	ready := make(chan []outgoing, 1)
	go func() { ready <- q.p.prepare(q.org, b) }()
	q.sem <- struct{}{}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		defer func() { <-q.sem }()
		if err := q.p.send(q.ctx, q.org, b, <-ready); err != nil {
			q.fail(err)
		}
	}()
}

func (q *publishQueue) fail(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.mu.Unlock()
}

func (q *publishQueue) failed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err != nil
}

// wait returns once every submitted batch is acknowledged or failed.
func (q *publishQueue) wait() error {
	q.wg.Wait()
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// outgoing is one event of a batch on its way to the bus.
type outgoing struct {
	event *schemas.CallEvent
	msg   *message.Message
	rec   *unpod.Record
	id    Identity
	key   memKey
}

// send encodes and publishes a batch, remembers its events once the bus
// acknowledged them, then dead-letters what could not be published: the
// batch's dead letters and every event over the size limit.
func (p *Producer) send(ctx context.Context, org string, b *batch, out []outgoing) error {
	at, err := p.fence(ctx, org)
	if err != nil {
		return err
	}
	if !at.IsZero() {
		stamp := strconv.FormatInt(at.UnixMilli(), 10)
		for i := range out {
			out[i].msg.Metadata.Set(schemas.FencedAtMetadata, stamp)
		}
	}
	acked, refused, err := p.publishEvents(ctx, org, out)
	if err != nil {
		return err
	}
	for _, o := range refused {
		b.dead = append(b.dead, tooLarge(org, o.rec, o.id.CallKey, "the bus refused its event as too large"))
	}
	p.commit(org, acked)
	for i := range b.dead {
		if err := p.deadLetter(org, b.window, &b.dead[i]); err != nil {
			return err
		}
	}
	return nil
}

// prepare encodes a batch's events; those too large for the bus become
// dead letters of the batch.
func (p *Producer) prepare(org string, b *batch) []outgoing {
	events := make([]schemas.CallEvent, len(b.recs))
	out := make([]outgoing, 0, len(b.recs))
	source := schemas.Source(org)
	at := b.observed.UTC().Format(time.RFC3339Nano) // every event's ObservedAt
	size := 0
	for _, r := range b.recs {
		size += 512 + len(r.Raw)
	}
	buf := make([]byte, 0, size)
	for i, r := range b.recs {
		events[i] = NewEvent(org, r, b.ids[i], b.revisions[i], b.observed)
		msg := newMessage(&events[i], source, at, &buf)
		if n := messageSize(msg); n > p.cfg.MaxMessageBytes {
			b.dead = append(b.dead, tooLarge(org, r, b.ids[i].CallKey,
				fmt.Sprintf("its event is %d bytes, over producer.max_message_bytes %d", n, p.cfg.MaxMessageBytes)))
			continue
		}
		out = append(out, outgoing{event: &events[i], msg: msg, rec: r, id: b.ids[i], key: b.keys[i]})
	}
	return out
}

func tooLarge(org string, r *unpod.Record, callKey, why string) deadLetter {
	return deadLetter{raw: r.Raw, kind: kindTooLarge, callKey: callKey, reason: "too large: " + why, mark: markOf(org, r.Raw)}
}

// publishEvents publishes out as one batch. When the bus refuses it as too
// large (schemas.ErrTooLarge), it learns what the batch wrote (reading the
// topic back, with an EventLog) and publishes the rest one by one, so that
// the refused events come back in refused and every other one is
// published.
func (p *Producer) publishEvents(ctx context.Context, org string, out []outgoing) (acked, refused []outgoing, err error) {
	if len(out) == 0 {
		return nil, nil, nil
	}
	msgs := make([]*message.Message, len(out))
	for i := range out {
		msgs[i] = out[i].msg
	}
	err = p.deps.Publisher.Publish(p.deps.Topic, msgs...)
	if err == nil {
		return out, nil, nil
	}
	fail := func(n int, err error) error {
		// Some of the batch may have been written: learn what from the
		// topic before publishing anything else for this org.
		p.mu.Lock()
		p.resync[org] = true
		p.mu.Unlock()
		return fmt.Errorf("%w: publish %d events of org %s to %s: %v", errPublish, n, org, p.deps.Topic, err)
	}
	if !errors.Is(err, schemas.ErrTooLarge) {
		return nil, nil, fail(len(msgs), err)
	}
	if len(out) > 1 && p.deps.EventLog != nil {
		if _, rerr := p.readBackOrg(ctx, org); rerr != nil {
			return nil, nil, fail(len(msgs), fmt.Errorf("%v; reading back what it wrote: %v", err, rerr))
		}
	}
	for _, o := range out {
		if len(out) > 1 && !p.mem.check(o.key, o.id.hash).Publish {
			acked = append(acked, o) // written by the refused batch
			continue
		}
		err := p.deps.Publisher.Publish(p.deps.Topic, o.msg)
		switch {
		case errors.Is(err, schemas.ErrTooLarge):
			refused = append(refused, o)
		case err != nil:
			p.commit(org, acked)
			return nil, nil, fail(1, err)
		default:
			acked = append(acked, o)
		}
	}
	return acked, refused, nil
}

// commit remembers events the bus acknowledged, counts them and hands them
// to Deps.OnEvent.
func (p *Producer) commit(org string, acked []outgoing) {
	updated := 0
	for _, o := range acked {
		e := o.event
		if p.mem.commit(o.key, memEntry{hash: o.id.hash, revision: uint32(e.Revision), minute: unixMinute(e.CreationTime)}) {
			auditPublished(p, org, e.CreationTime)
		}
		if e.Revision > 1 {
			updated++
		}
	}
	p.updated.Add(int64(updated))
	p.published.Add(int64(len(acked)))
	p.act.add(org, 0, len(acked))
	p.m.fresh(p.now(), acked)
	p.m.published.WithLabelValues(org, schemas.TypeCallUpdated).Add(float64(updated))
	p.m.published.WithLabelValues(org, schemas.TypeCallCreated).Add(float64(len(acked) - updated))
	p.m.publishedCalls(org, acked)
	p.m.remembered.Set(float64(p.mem.Len()))
	if p.deps.OnEvent != nil && len(acked) > 0 {
		p.eventMu.Lock()
		for _, o := range acked {
			p.deps.OnEvent(o.event)
		}
		p.eventMu.Unlock()
	}
}
