package producer

import (
	"context"
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
// rebuilt from what was really published; kafkabus.TopicLog is one.
type EventLog interface {
	// EndOffsets returns the offset the next record of each partition gets.
	EndOffsets(ctx context.Context) (map[int]int64, error)
	// ReadFrom calls fn with the value of every record from the given
	// offsets (the first offset for a partition missing from from) up to the
	// end offsets at the time of the call, from one goroutine at a time;
	// value is not used after fn returns.
	ReadFrom(ctx context.Context, from map[int]int64, fn func(value []byte) error) error
}

// Deps are the producer's collaborators.
type Deps struct {
	Source    Source            // the API (required)
	Publisher message.Publisher // the bus: kafkabus.Publisher or the embedded bus (required)
	Topic     string            // the events topic (required)
	// DLQTopic receives, through Publisher, every record that cannot be
	// published as an event (see the package documentation, Dead
	// letters) (required).
	DLQTopic string
	Store    StateStore // where checkpoints are saved (required)
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
	// Ownership shares the organizations with other producers
	// (kafkabus.GroupOwner); nil owns them all.
	Ownership Ownership
}

// Stats are running totals, for a summary line. Invalid counts
// undecodable records at every read; DeadLettered counts records put on
// the DLQ, once each.
type Stats struct {
	RecordsRead, Published, Updated, Duplicates, Invalid, DeadLettered int64
	Remembered                                                         int
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

	sources sources  // each org's last poll, for Ready and Sources
	act     activity // requests and events per org since its last poll, for its cadence
	known   orgList  // the organizations to poll, as discovered
	own     ownState
	om      *ownMetrics

	mu       sync.Mutex
	cps      map[string]*Checkpoint
	dirty    bool
	resync   map[string]bool        // orgs whose last publish failed
	orgLocks map[string]*sync.Mutex // one gate at a time per org: window reads and Replay
	restored bool
	pageHook func(records int) // backfill progress; set only while no org loop runs
	eventMu  sync.Mutex        // OnEvent is called by one goroutine at a time
	saveMu   sync.Mutex        // saves happen one at a time, in order
	dead     deadMarks         // what was dead-lettered, saved in the checkpoints
	loggedMu sync.Mutex
	logged   map[string]bool // dead-letter kinds logged once
	audit    auditLedger     // distinct calls published per org and hour (audit.go)

	published    atomic.Int64
	updated      atomic.Int64
	read         atomic.Int64
	dups         atomic.Int64
	invalid      atomic.Int64
	deadLettered atomic.Int64
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
	case deps.DLQTopic == "":
		return nil, errors.New("producer: no dead-letter topic: records that cannot be published would be lost")
	case deps.Store == nil:
		return nil, errors.New("producer: no state store")
	}
	clock, _ := ParseSimClock(cfg.SimClock)
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	om, err := newOwnMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Producer{
		cfg: cfg, deps: deps, log: deps.Logger, clock: clock, now: deps.Now, mem: NewMemory(), m: m, om: om,
		cps: map[string]*Checkpoint{}, resync: map[string]bool{}, orgLocks: map[string]*sync.Mutex{}, logged: map[string]bool{},
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
		Duplicates: p.dups.Load(), Invalid: p.invalid.Load(), DeadLettered: p.deadLettered.Load(), Remembered: p.mem.Len(),
	}
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
		p.log.Warn("listing organizations failed, retrying", "err", err.Error(), "wait", wait.String())
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

// maxRetryAfterWait caps how long a server's Retry-After pauses an
// organization: a server asking for more is logged and polled again after
// this.
const maxRetryAfterWait = time.Hour

// orgLoop polls one organization until ctx ends. Failures pause only this
// organization, with exponential backoff; a 429 (or 503) that outlasted
// the client's own retries pauses it for the server's Retry-After instead,
// capped at maxRetryAfterWait.
func (p *Producer) orgLoop(ctx context.Context, org string) {
	bo := p.newBackoff()
	cad := newCadence(p.cfg, p.now())
	for {
		_, err := p.fence(ctx, org) // a stale owner does not even poll
		if err == nil {
			err = p.pollOrg(ctx, org)
		}
		if ctx.Err() != nil {
			return
		}
		wait := p.clock.Wall(cad.next(p.now(), p.pollOutcome(org, err)))
		if err != nil {
			kind := "transient"
			ra := unpod.RetryAfter(err)
			if ra > 0 {
				wait = ra // the server's clock, not the simulated one
				if ra > maxRetryAfterWait {
					wait = maxRetryAfterWait
					p.log.Warn("the API asked to wait longer than the producer waits; capped",
						"org", org, "retry_after", ra.String(), "cap", maxRetryAfterWait.String())
				}
			} else {
				wait = bo.NextBackOff()
			}
			switch {
			case ra > 0:
				kind = "rate_limited"
				p.log.Warn("the API asked to wait (Retry-After); organization paused", "org", org, "err", err.Error(), "retry_in", wait.String())
			case unpod.IsPermanent(err):
				kind = "permanent"
				p.log.Error("organization paused: the API refused its requests; fix the token, Org-Handle or base URL",
					"org", org, "err", err.Error(), "retry_in", wait.String())
			case errors.Is(err, errPublish), errors.Is(err, errDeadLetter):
				kind = "publish"
				p.log.Error("publishing failed; organization paused", "org", org, "err", err.Error(), "retry_in", wait.String())
			default:
				p.log.Warn("polling organization failed; paused", "org", org, "err", err.Error(), "retry_in", wait.String())
			}
			p.m.orgErrors.WithLabelValues(org, kind).Inc()
			p.m.paused.WithLabelValues(org).Set(1)
		} else {
			bo.Reset()
			p.m.paused.WithLabelValues(org).Set(0)
		}
		p.m.polled(org, err)
		p.sources.record(org, err)
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
	if err := p.readRecentIfDue(ctx, org, now); err != nil {
		return err
	}
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
		if err := p.save(ctx); err != nil {
			return fmt.Errorf("%w: saving the first checkpoint of org %s: %v", errPublish, org, err)
		}
	}
	return nil
}

var errPublish = errors.New("producer: bus")
