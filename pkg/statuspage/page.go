package statuspage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config sets how the page samples. The zero value of a field takes its
// default.
type Config struct {
	// Interval is how often the registry is sampled and the page updated
	// (default 2s).
	Interval time.Duration
	// RateWindow is the span rates are computed over (default 10s; shorter
	// right after the start).
	RateWindow time.Duration
	// FreshnessWindow is the span freshness quantiles are taken over
	// (default 5m).
	FreshnessWindow time.Duration
	// ChartStep and ChartSpan shape the calls chart: bars of ChartStep
	// over the last ChartSpan (defaults 1m and 1h).
	ChartStep, ChartSpan time.Duration
	// MaxStreams bounds the concurrent /status/events streams (default
	// 32); more are refused with 503 so that a page left open in many tabs
	// cannot exhaust the process.
	MaxStreams int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Interval: 2 * time.Second, RateWindow: 10 * time.Second, FreshnessWindow: 5 * time.Minute,
		ChartStep: time.Minute, ChartSpan: time.Hour, MaxStreams: 32}
}

func (c *Config) fill() error {
	d := DefaultConfig()
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.Interval, d.Interval}, {&c.RateWindow, d.RateWindow}, {&c.FreshnessWindow, d.FreshnessWindow},
		{&c.ChartStep, d.ChartStep}, {&c.ChartSpan, d.ChartSpan}} {
		if *f.v < 0 {
			return fmt.Errorf("statuspage: negative duration %s in config %+v", *f.v, *c)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = d.MaxStreams
	}
	if c.ChartSpan < c.ChartStep {
		return fmt.Errorf("statuspage: chart span %s is shorter than its step %s", c.ChartSpan, c.ChartStep)
	}
	return nil
}

// Deps are what the page reads and tells.
type Deps struct {
	// Gatherer is the process's registry, the one /metrics serves
	// (required).
	Gatherer prometheus.Gatherer
	// Process names the command, e.g. "callstream run".
	Process string
	// Producer says the process runs the producer; Plugins are the
	// consumer plug-ins it runs. They decide which sections show.
	Producer bool
	Plugins  []string
	// Logger receives gather errors (rate-limited); nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now. For tests.
	Now func() time.Time
}

// Page samples a registry and serves the status page.
type Page struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	mu       sync.Mutex
	samples  *ring[sample]
	first    time.Time // when the first sample was taken
	chart    chartState
	seq      uint64
	latest   []byte // the last Snapshot, encoded
	lastWarn time.Time
	streams  map[chan []byte]struct{} // open /status/events streams
}

// sample is what the page keeps of one gather: the counters it computes
// rates of and the freshness histograms.
type sample struct {
	at       time.Time
	counters map[string]float64
	hists    map[string][]bucket
}

// New returns a Page; Run samples, Register serves it.
func New(cfg Config, deps Deps) (*Page, error) {
	if deps.Gatherer == nil {
		return nil, errors.New("statuspage: no Gatherer (the process's Prometheus registry)")
	}
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	keep := max(cfg.RateWindow, cfg.FreshnessWindow)
	return &Page{cfg: cfg, deps: deps, log: deps.Logger,
		samples: newRing[sample](int(keep/cfg.Interval) + 3),
		chart:   chartState{base: map[string]float64{}},
		streams: map[chan []byte]struct{}{}}, nil
}

// Run samples the registry every Interval until ctx is done, pushing each
// snapshot to the open streams.
func (p *Page) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		p.Sample()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sample gathers the registry once, updates the rates and the chart, and
// returns the new snapshot (also pushed to the open streams). Run calls it
// every Interval.
func (p *Page) Sample() *Snapshot {
	mfs, gerr := p.deps.Gatherer.Gather()
	v := newView(mfs)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.deps.Now()
	s := p.takeSample(v, now)
	if p.seq == 0 {
		p.first = now
	}
	p.samples.push(s)
	p.chart.add(v, now, p.cfg.ChartStep, p.cfg.ChartSpan)
	p.seq++
	snap := p.build(v, now)
	if gerr != nil {
		snap.GatherError = gerr.Error()
		if now.Sub(p.lastWarn) > time.Minute {
			p.lastWarn = now
			p.log.Warn("status page: the registry could not be gathered whole; showing what could", "err", gerr)
		}
	}
	data, err := json.Marshal(snap)
	if err != nil {
		// Only non-finite numbers could fail, and build keeps them out.
		p.log.Error("status page: encode snapshot", "err", err)
		return snap
	}
	p.latest = data
	for ch := range p.streams {
		select {
		case <-ch: // a slow reader gets the newest snapshot, not a backlog
		default:
		}
		ch <- data
	}
	return snap
}

// current returns the last encoded snapshot, sampling once if there is
// none yet.
func (p *Page) current() []byte {
	p.mu.Lock()
	data := p.latest
	p.mu.Unlock()
	if data == nil {
		p.Sample()
		p.mu.Lock()
		data = p.latest
		p.mu.Unlock()
	}
	return data
}

// Metric names the page reads.
const (
	mRead         = "callstream_producer_records_read_total"
	mPublished    = "callstream_producer_events_published_total"
	mLag          = "callstream_producer_window_lag_seconds"
	mPaused       = "callstream_producer_org_paused"
	mPauseReason  = "callstream_producer_org_pause_reason"
	mCalls        = "callstream_producer_calls_total"
	mLastPoll     = "callstream_producer_last_poll_timestamp_seconds"
	mProducerDLQ  = "callstream_producer_dead_lettered_total"
	mMessages     = "callstream_consumer_messages_total"
	mConsumerLag  = "callstream_consumer_lag"
	mAlerts       = "callstream_alerting_alerts"
	mAlertValue   = "callstream_alerting_alert_value"
	mAlertThresh  = "callstream_alerting_alert_threshold"
	mAlertStarts  = "callstream_alerting_alert_starts_at_seconds"
	mAlertEnds    = "callstream_alerting_alert_ends_at_seconds"
	mWebhookQueue = "callstream_webhooks_queued"
	mWebhookOpen  = "callstream_webhooks_breaker_open"
	mWebhookOff   = "callstream_webhooks_endpoint_disabled"
	mWebhookOut   = "callstream_webhooks_outcomes_total"
	mFreshness    = "callstream_event_freshness_seconds"
)

// Keys of the counters whose rates are computed.
const (
	keyRead      = "read"
	keyPublished = "published"
	keyHandled   = "handled\x00" // + plug-in
	keyWebhook   = "webhook\x00" // + endpoint
)

func (p *Page) takeSample(v view, now time.Time) sample {
	s := sample{at: now, counters: map[string]float64{
		keyRead:      v.sum(mRead, nil),
		keyPublished: v.sum(mPublished, nil),
	}, hists: map[string][]bucket{}}
	for plugin, n := range v.by(mMessages, "plugin", map[string]string{"outcome": "handled"}) {
		s.counters[keyHandled+plugin] = n
	}
	for ep, n := range v.by(mWebhookOut, "endpoint", map[string]string{"outcome": "delivered"}) {
		s.counters[keyWebhook+ep] = n
	}
	for _, pt := range v[mFreshness] {
		if pt.buckets != nil {
			s.hists[labelKey(pt.labels)] = pt.buckets
		}
	}
	return s
}

// rate is the per-second increase of counter key over the rate window, or
// nil before two samples span any time.
func (p *Page) rate(key string) *float64 {
	n := p.samples.len()
	if n < 2 {
		return nil
	}
	cur := p.samples.last()
	// The oldest sample inside the window (with half an interval of slack
	// for ticker jitter) is the base.
	from := cur.at.Add(-p.cfg.RateWindow - p.cfg.Interval/2)
	for i := 0; i < n-1; i++ {
		base := p.samples.at(i)
		if base.at.Before(from) {
			continue
		}
		dt := cur.at.Sub(base.at).Seconds()
		if dt <= 0 {
			return nil
		}
		d := cur.counters[key] - base.counters[key]
		if d < 0 { // a counter reset: count from zero
			d = cur.counters[key]
		}
		return finite(d / dt)
	}
	return nil
}

// freshnessBase returns the buckets of series key at the start of the
// freshness window: from the oldest sample inside it, or none (count from
// zero) while the process is younger than the window.
func (p *Page) freshnessBase(key string, now time.Time) []bucket {
	from := now.Add(-p.cfg.FreshnessWindow)
	if !p.first.Before(from) {
		return nil
	}
	for i := 0; i < p.samples.len(); i++ {
		if s := p.samples.at(i); !s.at.Before(from) {
			return s.hists[key]
		}
	}
	return nil
}

func finite(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}
