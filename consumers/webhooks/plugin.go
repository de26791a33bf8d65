package webhooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/callstream/callstream/consumers"
)

// Name is the plug-in's name: it names the consumer group, metrics and logs.
const Name = "webhooks"

// Factory returns the plug-in's factory, closed over its config section.
func Factory(cfg Config) consumers.Factory {
	return consumers.Factory{Name: Name, New: func(deps consumers.Deps) (consumers.Plugin, error) {
		return New(cfg, deps)
	}}
}

// Plugin delivers call events to subscribed endpoints. It implements
// consumers.BatchHandler (and Handler, for one event at a time), Runner,
// Closer and Tuner.
type Plugin struct {
	cfg     Config
	deps    consumers.Deps
	log     *slog.Logger
	client  *http.Client
	metrics *metrics

	endpoints []*endpoint          // from the config, in config order
	byName    map[string]*endpoint // the same, by name
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
		all: map[string]*endpoint{}, byName: map[string]*endpoint{}, ready: make(chan struct{}), now: time.Now,
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
		p.byName[ep.name] = ep
	}
	p.journal = newJournal(deps.State, &p.state, p.snapshot, cfg.FlushInterval, cfg.CompactBytes)
	if cfg.Instance != "" {
		p.journal.prefix = cfg.Instance + "."
	}
	p.journal.observe = func(kind string, took time.Duration, bytes int) {
		m.saves.WithLabelValues(kind).Observe(took.Seconds())
		m.saved.WithLabelValues(kind).Add(float64(bytes))
	}
	p.journal.spilled = func(name string) {
		if ep := p.all[name]; ep != nil {
			p.metrics.spilled.WithLabelValues(name).Set(float64(p.journal.spillLen(name)))
			ep.signalRoom()
			ep.mu.Lock()
			ep.spillFreedLocked() // dropped events make room too
			ep.mu.Unlock()
		}
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
		capacity:    orDefault(ec.QueueSize, p.cfg.QueueSize),
		spillBytes:  orDefault(ec.SpillBytes, p.cfg.SpillBytes),
		headers:     http.Header{},
		secrets:     newScrubber(ec),
		wake:        make(chan struct{}, 1),
		room:        make(chan struct{}, 1),
		freed:       make(chan struct{}),
		live:        map[string]*entry{},
		lanes:       map[string]*lane{},
		br:          breaker{threshold: p.cfg.BreakerFailures, cooldown: p.cfg.BreakerCooldown},
	}
	for k, v := range ec.Headers {
		ep.headers.Set(k, v)
	}
	if ec.RateLimit > 0 {
		// A burst of one: attempts are spaced evenly, the first at once.
		ep.limiter = rate.NewLimiter(rate.Limit(ec.RateLimit), 1)
	}
	return ep, nil
}

// removedEndpoint holds events recovered for an endpoint no longer in the
// config: it is disabled, so its worker hands them to the DLQ.
func (p *Plugin) removedEndpoint(name string) *endpoint {
	ep := &endpoint{
		name: name, concurrency: 1, capacity: 1, spillBytes: 1,
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1), freed: make(chan struct{}),
		live: map[string]*entry{}, lanes: map[string]*lane{},
		disabled: true, reason: "endpoint removed from the configuration",
		br: breaker{threshold: 1 << 30},
	}
	p.all[name] = ep
	return ep
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Name implements consumers.Plugin.
func (p *Plugin) Name() string { return Name }

// Tuning asks for large batches, handled one at a time: HandleBatch returns
// as soon as a batch is durably queued (one state save for the whole
// batch), never waiting for a delivery, so a short wait for a batch to fill
// costs little latency.
func (p *Plugin) Tuning() consumers.Tuning {
	return consumers.Tuning{MaxInFlight: 1024, BatchSize: 512, BatchWait: 2 * time.Millisecond, Concurrency: 1}
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
		wg.Go(func() { p.refill(ctx, ep) })
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
		byID[se.ID] = eventOf(se)
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
	spilled := 0
	for name, x := range rec.spills {
		if p.all[name] == nil {
			p.removedEndpoint(name)
		}
		p.metrics.spilled.WithLabelValues(name).Set(float64(x.Count))
		spilled += x.Count
	}
	p.order.Store(rec.maxOrder)
	if n := len(rec.entries); n > 0 || spilled > 0 {
		p.log.Info("webhooks: recovered queued deliveries", "deliveries", n, "events", len(events), "spilled", spilled)
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
				s.Events = append(s.Events, e.ev.snap())
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
