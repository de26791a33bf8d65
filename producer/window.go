package producer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

// readWindow reads w until its count stays the same while paging and
// every record it counts was seen, at most MaxWindowReads times.
func (p *Producer) readWindow(ctx context.Context, org string, w Window) error {
	for attempt := 1; ; attempt++ {
		ok, err := p.readOnce(ctx, org, w)
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
	}
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

// readOnce reads every page of w once, publishing as it goes, and reports
// whether the read was consistent: count the same on every page and every
// counted record seen.
func (p *Producer) readOnce(ctx context.Context, org string, w Window) (bool, error) {
	q := unpod.Query{Org: org, Page: 1, PageSize: p.cfg.PageSize, Start: w.Start, End: w.End}
	wrap := func(page int, err error) error {
		return fmt.Errorf("producer: org %s window [%s, %s) page %d: %w",
			org, w.Start.Format(time.RFC3339Nano), w.End.Format(time.RFC3339Nano), page, err)
	}
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
				pg, err := p.deps.Source.CallLogs(fctx, qq)
				if err != nil {
					ch <- fetched{err: wrap(page, err)}
					return
				}
				ch <- identifyPage(org, pg)
			}()
		}
	}()

	pub := p.newPublishQueue(org)
	seen := map[string]struct{}{}
	last, invalid, changed := first.Count, 0, false
	handle := func(page int, f fetched) {
		pg := f.page
		if pg.Count != last {
			changed = true
		}
		last = pg.Count
		n := len(pg.Records) + len(pg.Invalid)
		p.read.Add(int64(n))
		p.m.recordsRead.WithLabelValues(org).Add(float64(n))
		for _, bad := range pg.Invalid {
			invalid++
			p.invalid.Add(1)
			p.m.invalid.WithLabelValues(org).Inc()
			p.log.Error("API sent a call log that cannot be decoded; skipped", "org", org, "page", page,
				"index", bad.Index, "error", bad.Err.Error(), "raw", truncate(string(bad.Raw), 300))
		}
		pub.submit(p.gate(org, f, seen))
		if p.pageHook != nil {
			p.pageHook(n)
		}
	}
	page := pages + 1
	for ch := range ahead {
		page--
		f := <-ch
		if f.err != nil {
			cancel()
			pub.wait()
			return false, f.err
		}
		handle(page, f)
		if pub.failed() {
			break
		}
	}
	if !pub.failed() {
		handle(1, identifyPage(org, first))
	}
	if err := pub.wait(); err != nil {
		return false, err
	}
	return !changed && len(seen)+invalid >= last, nil
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
	observed  time.Time
}

// gate runs a page's records through the dedup memory. seen holds the call
// keys of the current read, so a record repeated by a page shift is taken
// once.
func (p *Producer) gate(org string, f fetched, seen map[string]struct{}) *batch {
	recs := f.page.Records
	if len(recs) == 0 {
		return nil
	}
	b := &batch{observed: p.now()}
	dups := 0
	for i := len(recs) - 1; i >= 0; i-- { // oldest first, see readOnce
		id := &f.ids[i]
		if _, dup := seen[id.CallKey]; dup {
			continue
		}
		seen[id.CallKey] = struct{}{}
		d := p.mem.check(f.keys[i], id.EventID)
		if !d.Publish {
			dups++
			continue
		}
		b.recs = append(b.recs, &recs[i])
		b.ids = append(b.ids, *id)
		b.keys = append(b.keys, f.keys[i])
		b.revisions = append(b.revisions, d.Revision)
	}
	p.dups.Add(int64(dups))
	p.m.duplicates.WithLabelValues(org).Add(float64(dups))
	if len(b.recs) == 0 {
		return nil
	}
	return b
}

// publishQueue publishes the batches of one window read, up to
// publishAhead at a time, and keeps the first error.
type publishQueue struct {
	p   *Producer
	org string
	sem chan struct{}
	wg  sync.WaitGroup
	mu  sync.Mutex
	err error
}

func (p *Producer) newPublishQueue(org string) *publishQueue {
	return &publishQueue{p: p, org: org, sem: make(chan struct{}, publishAhead)}
}

func (q *publishQueue) submit(b *batch) {
	if b == nil || q.failed() {
		return
	}
	q.sem <- struct{}{}
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		defer func() { <-q.sem }()
		if err := q.p.send(q.org, b); err != nil {
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

// send encodes and publishes a batch, and remembers its events once the
// bus acknowledged them.
func (p *Producer) send(org string, b *batch) error {
	events := make([]schemas.CallEvent, len(b.recs))
	msgs := make([]*message.Message, len(b.recs))
	source := schemas.Source(org)
	for i, r := range b.recs {
		events[i] = NewEvent(org, r, b.ids[i], b.revisions[i], b.observed)
		msgs[i] = newMessage(&events[i], source)
	}
	if err := p.deps.Publisher.Publish(p.deps.Topic, msgs...); err != nil {
		// Some of the batch may have been written: learn what from the
		// topic before publishing anything else for this org.
		p.mu.Lock()
		p.resync[org] = true
		p.mu.Unlock()
		return fmt.Errorf("%w: publish %d events of org %s to %s: %v", errPublish, len(msgs), org, p.deps.Topic, err)
	}
	updated := 0
	for i := range events {
		e := &events[i]
		p.mem.commit(b.keys[i], memEntry{event: eventPrefix(b.ids[i].EventID), revision: uint32(e.Revision), minute: unixMinute(e.CreationTime)})
		if e.Revision > 1 {
			updated++
		}
	}
	p.updated.Add(int64(updated))
	p.published.Add(int64(len(events)))
	p.m.published.WithLabelValues(org, schemas.TypeCallUpdated).Add(float64(updated))
	p.m.published.WithLabelValues(org, schemas.TypeCallCreated).Add(float64(len(events) - updated))
	p.m.publishedCalls(org, events)
	p.m.remembered.Set(float64(p.mem.Len()))
	if p.deps.OnEvent != nil {
		p.eventMu.Lock()
		for i := range events {
			p.deps.OnEvent(&events[i])
		}
		p.eventMu.Unlock()
	}
	return nil
}
