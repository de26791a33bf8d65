package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

// Source is the Unpod API as the producer uses it; *unpod.Client is one.
type Source interface {
	CallLogs(ctx context.Context, q unpod.Query) (*unpod.Page, error)
	Organizations(ctx context.Context) ([]unpod.Organization, error)
}

// EventLog reads back the events topic, so that the dedup memory can be
// rebuilt from what was really published. NewKafkaEventLog returns one.
type EventLog interface {
	// EndOffsets returns the offset the next record of each partition gets.
	EndOffsets(ctx context.Context) (map[int]int64, error)
	// ReadFrom calls fn with the value of every record from the given
	// offsets (the first offset for a partition missing from from) up to the
	// end offsets at the time of the call.
	ReadFrom(ctx context.Context, from map[int]int64, fn func(value []byte) error) error
}

// Deps are the producer's collaborators.
type Deps struct {
	Source    Source            // the API (required)
	Publisher message.Publisher // the bus: kafkabus.Publisher or watermill's GoChannel (required)
	Topic     string            // the events topic (required)
	Store     StateStore        // where checkpoints are saved (required)
	// EventLog reads the events topic back (Kafka mode). When nil, the
	// dedup memory is saved in the state instead (embedded mode).
	EventLog EventLog
	// Logger receives the producer's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the producer's metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// OnEvent, when set, is called with every event after the bus
	// acknowledged it, from the organization's goroutine.
	OnEvent func(*schemas.CallEvent)
	// Now overrides the clock (Config.SimClock); for tests.
	Now func() time.Time
}

// Stats are running totals, for a summary line.
type Stats struct {
	RecordsRead, Published, Updated, Duplicates, Invalid int64
	Remembered                                           int
}

// Producer polls the API per organization and publishes call events.
type Producer struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	clock Clock
	now   func() time.Time
	mem   *Memory
	m     *metrics

	mu        sync.Mutex
	cps       map[string]*Checkpoint
	dirty     bool
	resync    map[string]bool // orgs whose last publish failed
	restored  bool
	pageHook  func(records int) // backfill progress; set only while no org loop runs
	eventMu   sync.Mutex        // OnEvent is called by one goroutine at a time
	saveMu    sync.Mutex        // saves happen one at a time, in order
	published atomic.Int64
	updated   atomic.Int64
	read      atomic.Int64
	dups      atomic.Int64
	invalid   atomic.Int64
}

// New returns a Producer; Run starts it.
func New(cfg Config, deps Deps) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Source == nil:
		return nil, errors.New("producer: no API source")
	case deps.Publisher == nil:
		return nil, errors.New("producer: no publisher")
	case deps.Topic == "":
		return nil, errors.New("producer: no events topic")
	case deps.Store == nil:
		return nil, errors.New("producer: no state store")
	}
	clock, _ := ParseSimClock(cfg.SimClock)
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Producer{
		cfg: cfg, deps: deps, log: deps.Logger, clock: clock, now: deps.Now, mem: NewMemory(), m: m,
		cps: map[string]*Checkpoint{}, resync: map[string]bool{},
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = clock.Now
	}
	return p, nil
}

// Stats returns running totals.
func (p *Producer) Stats() Stats {
	return Stats{
		RecordsRead: p.read.Load(), Published: p.published.Load(), Updated: p.updated.Load(),
		Duplicates: p.dups.Load(), Invalid: p.invalid.Load(), Remembered: p.mem.Len(),
	}
}

// Memory returns the dedup memory, for measurements.
func (p *Producer) Memory() *Memory { return p.mem }

// Run polls every organization until ctx ends, then finishes the batch in
// flight, saves the checkpoint and returns. It returns early only when no
// organization can be polled at all.
func (p *Producer) Run(ctx context.Context) error {
	if err := p.Restore(ctx); err != nil {
		return err
	}
	orgs, err := p.orgs(ctx)
	if err != nil {
		return err
	}
	p.log.Info("producer started", "orgs", orgs, "topic", p.deps.Topic, "remembered_calls", p.mem.Len(),
		"rescan_ages", fmt.Sprint(p.cfg.RescanAges), "settle_lag", p.cfg.SettleLag.String(), "sim_clock", p.clock.String())
	var wg sync.WaitGroup
	for _, org := range orgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.orgLoop(ctx, org)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	save := time.NewTicker(p.cfg.SaveInterval)
	defer save.Stop()
	lastEvict := time.Now()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-save.C:
			if err := p.Save(ctx); err != nil && ctx.Err() == nil {
				p.log.Error("saving producer state failed; will retry", "error", err.Error())
			}
			if time.Since(lastEvict) > time.Minute {
				p.evict()
				lastEvict = time.Now()
			}
		}
	}
	// The organizations stopped between batches; the final save must
	// happen even though ctx is done.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := p.Save(sctx); err != nil {
		return fmt.Errorf("producer: final state save: %w", err)
	}
	p.log.Info("producer stopped, state saved", "published", p.published.Load(), "remembered_calls", p.mem.Len())
	return nil
}

// orgs returns the configured organizations, or those the token sees.
func (p *Producer) orgs(ctx context.Context) ([]string, error) {
	if len(p.cfg.Orgs) > 0 {
		return p.cfg.Orgs, nil
	}
	bo := backoff.WithContext(p.newBackoff(), ctx)
	var orgs []string
	err := backoff.RetryNotify(func() error {
		list, err := p.deps.Source.Organizations(ctx)
		if err != nil {
			if unpod.IsPermanent(err) {
				return backoff.Permanent(err)
			}
			return err
		}
		for _, o := range list {
			if o.Handle != "" {
				orgs = append(orgs, o.Handle)
			}
		}
		return nil
	}, bo, func(err error, wait time.Duration) {
		p.log.Warn("listing organizations failed, retrying", "error", err.Error(), "wait", wait.String())
	})
	if err != nil {
		return nil, fmt.Errorf("producer: no Org-Handles configured and listing the token's organizations failed: %w", err)
	}
	if len(orgs) == 0 {
		return nil, errors.New("producer: no Org-Handles configured and the token sees no organization")
	}
	return orgs, nil
}

func (p *Producer) newBackoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = p.clock.Wall(p.cfg.OrgBackoff)
	bo.MaxInterval = p.clock.Wall(p.cfg.OrgBackoffMax)
	bo.MaxElapsedTime = 0
	bo.Multiplier = 2
	bo.RandomizationFactor = 0.2
	bo.Reset()
	return bo
}

// orgLoop polls one organization until ctx ends. Failures pause only this
// organization, with exponential backoff.
func (p *Producer) orgLoop(ctx context.Context, org string) {
	bo := p.newBackoff()
	for {
		err := p.pollOrg(ctx, org)
		if ctx.Err() != nil {
			return
		}
		wait := p.clock.Wall(p.cfg.PollInterval)
		if err != nil {
			wait = bo.NextBackOff()
			kind := "transient"
			switch {
			case unpod.IsPermanent(err):
				kind = "permanent"
				p.log.Error("organization paused: the API refused its requests; fix the token or Org-Handle",
					"org", org, "error", err.Error(), "retry_in", wait.String())
			case errors.Is(err, errPublish):
				kind = "publish"
				p.log.Error("publishing failed; organization paused", "org", org, "error", err.Error(), "retry_in", wait.String())
			default:
				p.log.Warn("polling organization failed; paused", "org", org, "error", err.Error(), "retry_in", wait.String())
			}
			p.m.orgErrors.WithLabelValues(org, kind).Inc()
			p.m.paused.WithLabelValues(org).Set(1)
		} else {
			bo.Reset()
			p.m.paused.WithLabelValues(org).Set(0)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// checkpoint returns a copy of org's checkpoint, creating it at the
// lookback on first sight.
func (p *Producer) checkpoint(org string) *Checkpoint {
	p.mu.Lock()
	defer p.mu.Unlock()
	cp, ok := p.cps[org]
	if !ok {
		start := p.now().Add(-p.cfg.SettleLag - p.cfg.Lookback).Truncate(time.Second)
		cp = newCheckpoint(org, p.cfg.RescanAges, start)
		p.cps[org] = cp
		p.dirty = true
	}
	return cp.clone()
}

func (p *Producer) update(org string, fn func(*Checkpoint)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(p.cps[org])
	p.dirty = true
}

// pollOrg reads every window of org that is due.
func (p *Producer) pollOrg(ctx context.Context, org string) error {
	if err := p.resyncIfNeeded(ctx, org); err != nil {
		return err
	}
	// One "now" per poll: the windows due then are read, and the rest waits
	// for the next poll, so a fast clock cannot keep rung 0 busy with
	// slivers of time while the other rungs starve.
	now := p.now()
	for ctx.Err() == nil {
		cp := p.checkpoint(org)
		w, ok := cp.Next(now, p.cfg.SettleLag, p.cfg.PollInterval, p.cfg.MaxWindow)
		if !ok {
			p.m.lag.WithLabelValues(org).Set(now.Sub(cp.Rungs[0].Frontier).Seconds())
			return nil
		}
		if err := p.sampleIfDue(ctx, org, cp); err != nil {
			return err
		}
		p.log.Debug("reading window", "org", org, "rung_age", p.cfg.RescanAges[w.Rung].String(), "start", w.Start, "end", w.End)
		if err := p.readWindow(ctx, org, w); err != nil {
			return err
		}
		p.update(org, func(c *Checkpoint) { c.Done(w, now, p.cfg.SettleLag) })
		p.m.lag.WithLabelValues(org).Set(now.Sub(cp.Rungs[0].Frontier).Seconds())
	}
	return nil
}

// sampleIfDue records the events topic's end offsets at org's rung 0
// frontier, often enough that a restart reads back little more than the
// rescan horizon.
func (p *Producer) sampleIfDue(ctx context.Context, org string, cp *Checkpoint) error {
	if p.deps.EventLog == nil {
		return nil
	}
	step := max(p.cfg.PollInterval, p.cfg.RescanAges[len(p.cfg.RescanAges)-1]/16)
	if last, ok := cp.lastSampleAt(); ok && cp.Rungs[0].Frontier.Sub(last) < step {
		return nil
	}
	offs, err := p.deps.EventLog.EndOffsets(ctx)
	if err != nil {
		return fmt.Errorf("%w: end offsets of %s: %v", errPublish, p.deps.Topic, err)
	}
	p.update(org, func(c *Checkpoint) { c.addSample(offs) })
	if len(cp.Samples) == 0 {
		// The first sample of an org must be durable before its first
		// event is published: without it a restart would not know where
		// to read the org's events back from.
		if err := p.Save(ctx); err != nil {
			return fmt.Errorf("%w: saving the first checkpoint of org %s: %v", errPublish, org, err)
		}
	}
	return nil
}

var errPublish = errors.New("producer: bus")

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

// Pipelining of a window read: pages fetched ahead of the one being
// encoded, and batches being published while the next is prepared. Both
// keep order where it matters: a call appears once per read (seen), and
// the window is finished only when every batch was acknowledged.
const (
	fetchAhead   = 2
	publishAhead = 2
)

type fetched struct {
	page *unpod.Page
	err  error
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
	ahead := make(chan chan fetched, fetchAhead-1)
	go func() {
		defer close(ahead)
		for page := 2; page <= pages; page++ {
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
					err = wrap(page, err)
				}
				ch <- fetched{pg, err}
			}()
		}
	}()

	pub := p.newPublishQueue(org)
	seen := map[string]struct{}{}
	last, invalid, changed := first.Count, 0, false
	handle := func(page int, pg *unpod.Page) {
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
		pub.submit(p.prepare(org, pg.Records, seen))
		if p.pageHook != nil {
			p.pageHook(n)
		}
	}
	handle(1, first)
	page := 1
	for ch := range ahead {
		page++
		f := <-ch
		if f.err != nil {
			cancel()
			pub.wait()
			return false, f.err
		}
		handle(page, f.page)
		if pub.failed() {
			break
		}
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

// batch is one page's events, ready to publish.
type batch struct {
	events []schemas.CallEvent
	msgs   []*message.Message
}

// prepare runs records through the gate and encodes what passes. seen holds
// the call keys of the current read, so a record repeated by a page shift
// is taken once.
func (p *Producer) prepare(org string, recs []unpod.Record, seen map[string]struct{}) *batch {
	if len(recs) == 0 {
		return nil
	}
	observed := p.now()
	b := &batch{events: make([]schemas.CallEvent, 0, len(recs))}
	for i := range recs {
		r := &recs[i]
		id := Identify(org, r)
		if _, dup := seen[id.CallKey]; dup {
			continue
		}
		seen[id.CallKey] = struct{}{}
		d := p.mem.Check(org, id.CallKey, id.EventID)
		if !d.Publish {
			p.dups.Add(1)
			p.m.duplicates.WithLabelValues(org).Inc()
			continue
		}
		b.events = append(b.events, NewEvent(org, r, id, d.Revision, observed))
	}
	if len(b.events) == 0 {
		return nil
	}
	b.msgs = make([]*message.Message, 0, len(b.events))
	for i := range b.events {
		b.msgs = append(b.msgs, newMessage(&b.events[i]))
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

// send publishes a batch and remembers its events once the bus
// acknowledged them.
func (p *Producer) send(org string, b *batch) error {
	if err := p.deps.Publisher.Publish(p.deps.Topic, b.msgs...); err != nil {
		// Some of the batch may have been written: learn what from the
		// topic before publishing anything else for this org.
		p.mu.Lock()
		p.resync[org] = true
		p.mu.Unlock()
		return fmt.Errorf("%w: publish %d events of org %s to %s: %v", errPublish, len(b.msgs), org, p.deps.Topic, err)
	}
	for i := range b.events {
		e := &b.events[i]
		p.mem.Commit(org, e.CallKey, mustUUID(e.EventID), e.Revision, e.CreationTime)
		if e.Revision > 1 {
			p.updated.Add(1)
			p.m.published.WithLabelValues(org, schemas.TypeCallUpdated).Inc()
		} else {
			p.m.published.WithLabelValues(org, schemas.TypeCallCreated).Inc()
		}
	}
	p.published.Add(int64(len(b.events)))
	p.m.remembered.Set(float64(p.mem.Len()))
	if p.deps.OnEvent != nil {
		p.eventMu.Lock()
		for i := range b.events {
			p.deps.OnEvent(&b.events[i])
		}
		p.eventMu.Unlock()
	}
	return nil
}

// resyncIfNeeded reads back what a failed publish of org may have written.
func (p *Producer) resyncIfNeeded(ctx context.Context, org string) error {
	p.mu.Lock()
	need := p.resync[org]
	var from map[int]int64
	if cp := p.cps[org]; cp != nil && len(cp.Samples) > 0 {
		from = cp.Samples[len(cp.Samples)-1].Offsets
	}
	p.mu.Unlock()
	if !need || p.deps.EventLog == nil {
		return nil
	}
	n, err := p.readBack(ctx, from, "")
	if err != nil {
		return fmt.Errorf("%w: reading back %s after a failed publish: %v", errPublish, p.deps.Topic, err)
	}
	p.log.Info("read back the events topic after a failed publish", "org", org, "events", n)
	p.mu.Lock()
	delete(p.resync, org)
	p.mu.Unlock()
	return nil
}

// Restore loads the saved state and rebuilds the dedup memory: from the
// state itself in embedded mode, from the events topic with Kafka. Run
// calls it; calling it again does nothing.
func (p *Producer) Restore(ctx context.Context) error {
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
		p.cps[org] = cp
	}
	p.mu.Unlock()
	if p.deps.EventLog == nil {
		if len(st.Memory) > 0 {
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
// Events of other organizations are skipped when only is set.
func (p *Producer) readBack(ctx context.Context, from map[int]int64, only string) (int, error) {
	var n atomic.Int64
	err := p.deps.EventLog.ReadFrom(ctx, from, func(value []byte) error {
		e, ok := scanEvent(value)
		if !ok {
			if err := json.Unmarshal(value, &e); err != nil {
				p.log.Warn("skipping a record of the events topic that is not a call event", "error", err.Error())
				return nil
			}
		}
		id, err := parseUUID(e.EventID)
		if err != nil || e.CallKey == "" || e.Revision < 1 {
			p.log.Warn("skipping a call event without a usable identity", "event_id", e.EventID, "call_key", e.CallKey)
			return nil
		}
		if only != "" && e.Org != only {
			return nil
		}
		p.mem.Commit(e.Org, e.CallKey, id, e.Revision, e.CreationTime)
		n.Add(1)
		return nil
	})
	p.m.restoredCalls.Add(float64(n.Load()))
	return int(n.Load()), err
}

// Save writes the checkpoint if it changed since the last save. With
// Kafka, the end offsets are read before the checkpoints are copied, so
// every event published after the offsets belongs to a window the saved
// checkpoint does not count as read.
func (p *Producer) Save(ctx context.Context) error {
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
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
		st.Orgs[org] = cp.clone()
	}
	p.dirty = false
	p.mu.Unlock()
	if p.deps.EventLog == nil {
		mem, err := p.mem.MarshalBinary()
		if err != nil {
			return err
		}
		st.Memory = mem
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

// evict forgets calls below every organization's lowest frontier: no rung
// reads them again.
func (p *Producer) evict() {
	p.mu.Lock()
	var low time.Time
	for _, cp := range p.cps {
		if l := cp.Low(); low.IsZero() || l.Before(low) {
			low = l
		}
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
