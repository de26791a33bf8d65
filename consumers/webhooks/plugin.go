package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callstream/callstream/consumers"
)

// Name is the plug-in's name: it names the consumer group, metrics and logs.
const Name = "webhooks"

// EndpointMetadata is set on DLQ messages to the name of the endpoint the
// event could not be delivered to, so it can be replayed to that endpoint.
const EndpointMetadata = "callstream_webhooks_endpoint"

// Factory returns the plug-in's factory, closed over its config section.
func Factory(cfg Config) consumers.Factory {
	return consumers.Factory{Name: Name, New: func(deps consumers.Deps) (consumers.Plugin, error) {
		return New(cfg, deps)
	}}
}

// Plugin delivers call events to subscribed endpoints. It implements
// consumers.Handler, Runner, Closer and Tuner.
type Plugin struct {
	cfg     Config
	deps    consumers.Deps
	log     *slog.Logger
	client  *http.Client
	metrics *metrics

	endpoints []*endpoint          // from the config, in config order
	all       map[string]*endpoint // plus endpoints removed from the config that still hold events

	state   sync.RWMutex
	journal *journal
	order   atomic.Uint64
	ready   chan struct{}
	started atomic.Bool
	now     func() time.Time
	// dlqRetry spaces attempts to publish to the DLQ after one failed.
	dlqRetry time.Duration
}

// New builds the plug-in. It needs deps.State (the durable queue) and
// deps.Publisher (the DLQ); nothing is loaded or sent until Run.
func New(cfg Config, deps consumers.Deps) (*Plugin, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.State == nil {
		return nil, errors.New("webhooks: deps.State is required: it holds the durable delivery queue")
	}
	if deps.Publisher == nil || deps.Topics.DLQ == "" {
		return nil, errors.New("webhooks: deps.Publisher and deps.Topics.DLQ are required for exhausted deliveries")
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Plugin{
		cfg: cfg, deps: deps, log: deps.Logger, client: newClient(&cfg), metrics: m,
		all: map[string]*endpoint{}, ready: make(chan struct{}), now: time.Now,
		dlqRetry: dlqRetryDelay,
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("consumer", Name)
	for _, ec := range cfg.Endpoints {
		ep, err := p.newEndpoint(ec)
		if err != nil {
			return nil, err
		}
		p.endpoints = append(p.endpoints, ep)
		p.all[ep.name] = ep
	}
	p.journal = newJournal(deps.State, &p.state, p.snapshot, cfg.FlushInterval, cfg.CompactBytes)
	if cfg.Instance != "" {
		p.journal.prefix = cfg.Instance + "."
	}
	p.journal.observe = func(kind string, took time.Duration, bytes int) {
		m.saves.WithLabelValues(kind).Observe(took.Seconds())
		m.saved.WithLabelValues(kind).Add(float64(bytes))
	}
	return p, nil
}

func (p *Plugin) newEndpoint(ec EndpointConfig) (*endpoint, error) {
	sg, err := newSigner(ec.Secrets)
	if err != nil {
		return nil, fmt.Errorf("webhooks: endpoint %q: %w", ec.Name, err)
	}
	ep := &endpoint{
		name: ec.Name, url: ec.URL, filter: ec.Filter, signer: sg,
		timeout:     orDefault(ec.Timeout, p.cfg.Timeout),
		concurrency: orDefault(ec.Concurrency, p.cfg.Concurrency),
		slots:       make(chan struct{}, orDefault(ec.QueueSize, p.cfg.QueueSize)),
		headers:     http.Header{},
		wake:        make(chan struct{}, 1),
		live:        map[string]*entry{},
		lanes:       map[string]*lane{},
		br:          breaker{threshold: p.cfg.BreakerFailures, cooldown: p.cfg.BreakerCooldown},
	}
	for k, v := range ec.Headers {
		ep.headers.Set(k, v)
	}
	if ec.RateLimit > 0 {
		ep.limiter = &limiter{every: time.Duration(float64(time.Second) / ec.RateLimit)}
	}
	return ep, nil
}

// removedEndpoint holds events recovered for an endpoint no longer in the
// config: it is disabled, so its worker hands them to the DLQ.
func (p *Plugin) removedEndpoint(name string) *endpoint {
	ep := &endpoint{
		name: name, concurrency: 1, slots: make(chan struct{}, 1), wake: make(chan struct{}, 1),
		live: map[string]*entry{}, lanes: map[string]*lane{},
		disabled: true, reason: "endpoint removed from the configuration",
		br: breaker{threshold: 1 << 30},
	}
	p.all[name] = ep
	return ep
}

func orDefault[T int | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Name implements consumers.Plugin.
func (p *Plugin) Name() string { return Name }

// Tuning lets the runtime hand out many events at once: Handle returns as
// soon as an event is durably queued, and concurrent Handles share one
// state save.
func (p *Plugin) Tuning() consumers.Tuning { return consumers.Tuning{MaxInFlight: 512} }

// Handle durably queues the event for every endpoint whose filter matches,
// then returns; delivery happens in the background. It blocks while a
// matching endpoint's queue is full (back-pressure) and until the queue
// change is saved, so an acknowledged event is never lost. An event already
// queued for an endpoint is not queued twice.
func (p *Plugin) Handle(ctx context.Context, d consumers.Delivery) error {
	select {
	case <-p.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	ev := &d.Event
	if ev.EventID == "" {
		return consumers.Permanent(errors.New("webhooks: event has no event_id"))
	}
	var targets []*endpoint
	queued := false // already queued somewhere: a redelivery
	for _, ep := range p.endpoints {
		if !ep.filter.matches(ev.Type(), ev.CallStatus, ev.CallType, ev.Org) {
			continue
		}
		if ep.has(ev.EventID) {
			queued = true
		} else {
			targets = append(targets, ep)
		}
	}
	if len(targets) == 0 {
		if queued {
			// Queued by an earlier Handle whose save may not be done (or
			// failed): wait for the next save, which covers it.
			return p.journal.pending().wait(ctx)
		}
		return nil
	}
	for i, ep := range targets {
		if err := ep.reserve(ctx); err != nil {
			for _, r := range targets[:i] {
				r.unreserve()
			}
			return err
		}
	}
	var body []byte
	if d.Message != nil && len(d.Message.Payload) > 0 {
		body = d.Message.Payload
	} else {
		var err error
		if body, err = json.Marshal(ev); err != nil {
			for _, r := range targets {
				r.unreserve()
			}
			return consumers.Permanent(fmt.Errorf("webhooks: encode event %s: %w", ev.EventID, err))
		}
	}
	e := &event{id: ev.EventID, callKey: ev.CallKey, rev: ev.Revision, order: p.order.Add(1), body: body}
	now := p.now()
	names := make([]string, 0, len(targets))
	p.state.RLock()
	for _, ep := range targets {
		ep.mu.Lock()
		if ep.enqueueLocked(&entry{ev: e, nextAt: now}) {
			names = append(names, ep.name)
		} else {
			ep.unreserveLocked()
		}
		ep.mu.Unlock()
	}
	w := p.journal.append(op{K: opAdd, ID: e.id, CallKey: e.callKey, Rev: e.rev, Order: e.order, Body: body, Eps: names})
	p.state.RUnlock()
	for _, ep := range targets {
		p.metrics.queued.WithLabelValues(ep.name).Inc()
		ep.signal()
	}
	if err := w.wait(ctx); err != nil {
		// The state store is at fault, not the event: the runtime retries
		// for as long as it takes and never dead-letters it for this.
		return consumers.Transient(fmt.Errorf("webhooks: queue event %s durably: %w", ev.EventID, err))
	}
	return nil
}

// Run loads the durable queue, then delivers until ctx ends. It returns
// after the workers stopped and the last queue changes were saved.
func (p *Plugin) Run(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("webhooks: Run called twice")
	}
	rec, err := p.journal.load(ctx)
	if err != nil {
		return err
	}
	p.restore(rec)
	close(p.ready)

	jctx, stopJournal := context.WithCancel(context.WithoutCancel(ctx))
	journalDone := make(chan struct{})
	go func() {
		defer close(journalDone)
		p.journal.run(jctx)
	}()
	var wg sync.WaitGroup
	for _, ep := range p.all {
		for range ep.concurrency {
			wg.Go(func() { p.work(ctx, ep) })
		}
	}
	<-ctx.Done()
	wg.Wait()
	stopJournal()
	<-journalDone
	return nil
}

// restore rebuilds the in-memory queues from recovered state.
func (p *Plugin) restore(rec *recovered) {
	for name, d := range rec.disabled {
		if ep := p.all[name]; ep != nil && ep.url == d.URL {
			ep.disabled, ep.reason = true, d.Reason
			p.metrics.disabled.WithLabelValues(name).Set(1)
		}
	}
	events := make([]*snapEvent, 0, len(rec.events))
	for _, e := range rec.events {
		events = append(events, e)
	}
	sort.Slice(events, func(i, j int) bool { return events[i].Order < events[j].Order })
	byID := make(map[string]*event, len(events))
	for _, se := range events {
		byID[se.ID] = &event{id: se.ID, callKey: se.CallKey, rev: se.Rev, order: se.Order, body: se.Body}
	}
	entries := make([]*snapEntry, 0, len(rec.entries))
	for _, se := range rec.entries {
		entries = append(entries, se)
	}
	sort.Slice(entries, func(i, j int) bool { return byID[entries[i].ID].order < byID[entries[j].ID].order })
	now := p.now()
	for _, se := range entries {
		ev := byID[se.ID]
		if ev == nil {
			continue
		}
		ep := p.all[se.Ep]
		if ep == nil {
			ep = p.removedEndpoint(se.Ep)
		}
		at := now
		if se.NextAt > 0 && !ep.disabled {
			at = time.Unix(0, se.NextAt)
		}
		ep.mu.Lock()
		ep.admitLocked()
		ep.enqueueLocked(&entry{ev: ev, attempts: se.Attempts, nextAt: at})
		ep.mu.Unlock()
		p.metrics.queued.WithLabelValues(ep.name).Inc()
	}
	p.order.Store(rec.maxOrder)
	if n := len(rec.entries); n > 0 {
		p.log.Info("webhooks: recovered queued deliveries", "deliveries", n, "events", len(events))
	}
}

// snapshot captures the live queues; the caller holds p.state exclusively.
func (p *Plugin) snapshot() snapshot {
	var s snapshot
	seen := map[string]bool{}
	for _, ep := range p.all {
		ep.mu.Lock()
		if ep.disabled && ep.url != "" {
			s.Disabled = append(s.Disabled, disabledRec{Ep: ep.name, URL: ep.url, Reason: ep.reason})
		}
		for _, e := range ep.live {
			at := int64(0)
			if e.attempts > 0 {
				at = e.nextAt.UnixNano()
			}
			s.Entries = append(s.Entries, snapEntry{Ep: ep.name, ID: e.ev.id, Attempts: e.attempts, NextAt: at})
			if !seen[e.ev.id] {
				seen[e.ev.id] = true
				s.Events = append(s.Events, snapEvent{ID: e.ev.id, CallKey: e.ev.callKey, Rev: e.ev.rev, Order: e.ev.order, Body: e.ev.body})
			}
		}
		ep.mu.Unlock()
	}
	return s
}

// Close releases idle connections.
func (p *Plugin) Close() error {
	p.client.CloseIdleConnections()
	return nil
}

// work is one of an endpoint's delivery workers.
func (p *Plugin) work(ctx context.Context, ep *endpoint) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil {
		e, wait := ep.next(p.now())
		if e != nil {
			p.deliver(ctx, ep, e)
			continue
		}
		var due <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			due = timer.C
		}
		select {
		case <-ctx.Done():
		case <-ep.wake:
		case <-due:
		}
	}
}

// discardBody drains at most limit bytes of a response so the connection
// can be reused, and returns the first bytes for error messages.
func discardBody(r io.Reader, limit int64) string {
	var head [128]byte
	n, _ := io.ReadFull(io.LimitReader(r, limit), head[:])
	_, _ = io.Copy(io.Discard, io.LimitReader(r, max(limit-int64(n), 0)))
	return string(head[:n])
}
