package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// Name is the plug-in's name: its consumer group is callstream-alerting.
const Name = "alerting"

// stateKey is the key of the alert state in the plug-in's state store.
const stateKey = "alert-state"

// destTopic names the alerts topic among an outbox item's destinations.
const destTopic = "topic"

// Notifier names, as used in metrics, logs and the outbox.
const (
	NotifierLog          = "log"
	NotifierWebhook      = "webhook"
	NotifierSlack        = "slack"
	NotifierAlertmanager = "alertmanager"
)

// tickInterval is how often idle partitions are checked and confirmed
// deliveries are saved.
const tickInterval = 500 * time.Millisecond

// Factory returns the runtime's factory for the alerting plug-in.
func Factory(cfg Config) consumers.Factory {
	return consumers.Factory{Name: Name, New: func(deps consumers.Deps) (consumers.Plugin, error) {
		return New(cfg, deps)
	}}
}

// Plugin evaluates the alerting rules on call events and publishes and
// notifies alert transitions. Handle is serialised: evaluation is one
// ordered computation.
type Plugin struct {
	cfg     Config
	deps    consumers.Deps
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time

	mu     sync.Mutex
	eng    *engine
	outbox []outboxItem
	queued map[string]bool // notice id + destination handed to a queue by this process
	dirty  bool
	late   lateLog
	// lastPublishErr rate-limits the log line about a failing alerts topic.
	lastPublishErr time.Time

	queues []*queue
	am     *alertmanagerSender

	// Confirmations from notifier goroutines, kept apart from mu so a
	// queue dropping a notice while mu is held cannot deadlock.
	cmu       sync.Mutex
	confirmed []confirmation

	runMu  sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type confirmation struct{ dest, id string }

// lateLog rate-limits the log lines about late calls.
type lateLog struct {
	last  time.Time
	count int
}

// New builds the plug-in and restores its saved alert state.
func New(cfg Config, deps consumers.Deps) (*Plugin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Plugin{cfg: cfg, deps: deps, log: deps.Logger.With("consumer", Name), metrics: m, now: time.Now,
		eng: newEngine(cfg), queued: map[string]bool{}}
	p.buildNotifiers()
	if err := p.load(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Plugin) buildNotifiers() {
	nc := p.cfg.Notifiers
	client := &http.Client{Timeout: nc.Timeout}
	add := func(name string, s sender) {
		p.queues = append(p.queues, newQueue(name, s, nc, p.log, p.metrics, p.confirm))
	}
	if nc.Log.Enabled {
		add(NotifierLog, logSender{log: p.log})
	}
	if nc.Webhook.URL != "" {
		key, _ := decodeSecret(nc.Webhook.Secret) // checked by Validate
		add(NotifierWebhook, &webhookSender{client: client, url: nc.Webhook.URL, key: key, now: time.Now})
	}
	if nc.Slack.URL != "" {
		add(NotifierSlack, &slackSender{client: client, url: nc.Slack.URL})
	}
	if nc.Alertmanager.URL != "" {
		p.am = &alertmanagerSender{client: client, url: nc.Alertmanager.URL + "/api/v2/alerts",
			resend: nc.Alertmanager.ResendInterval, now: time.Now, active: map[string]Notice{}, page: p.cfg.StatusPageURL}
		add(NotifierAlertmanager, p.am)
	}
}

func (p *Plugin) load() error {
	if p.deps.State == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	data, err := p.deps.State.Load(ctx, stateKey)
	if err != nil {
		return fmt.Errorf("alerting: load state %q: %w", stateKey, err)
	}
	if data == nil {
		return nil
	}
	s, err := decodeState(data)
	if err != nil {
		return fmt.Errorf("alerting: state %q: %w", stateKey, err)
	}
	dropped, err := p.eng.restore(s)
	if err != nil {
		return fmt.Errorf("alerting: restore state: %w", err)
	}
	for _, r := range dropped {
		p.log.Warn("saved alert belongs to a rule no longer configured; dropped", "rule", r)
	}
	// Destinations removed from the config since the save will never
	// confirm: forget them.
	dests := map[string]bool{destTopic: true}
	for _, q := range p.queues {
		dests[q.name] = true
	}
	for _, it := range s.Outbox {
		it.Pending = slices.DeleteFunc(it.Pending, func(d string) bool { return !dests[d] })
		if len(it.Pending) > 0 {
			p.outbox = append(p.outbox, it)
		}
	}
	if p.am != nil {
		for _, n := range p.eng.firingNotices() {
			p.am.track(n)
		}
	}
	p.log.Info("alert state restored", "watermark", s.Watermark, "alerts", len(s.Alerts), "outbox", len(s.Outbox))
	return nil
}

// Name implements consumers.Plugin.
func (p *Plugin) Name() string { return Name }

// Tuning asks for one message in flight: evaluation follows the order of
// each partition, and the plug-in is cheap per event.
func (p *Plugin) Tuning() consumers.Tuning { return consumers.Tuning{MaxInFlight: 1} }

// Handle counts one call event, evaluates the steps its arrival closed and
// saves, publishes and notifies what changed. An error (the state could not
// be saved) makes the runtime redeliver the event; the redelivery is
// recognised as a duplicate and only the pending work is retried.
func (p *Plugin) Handle(ctx context.Context, d consumers.Delivery) error {
	partition := ""
	if d.HasPosition {
		partition = strconv.Itoa(int(d.Position.Partition))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	switch p.eng.Observe(partition, &d.Event, now) {
	case Counted:
		p.metrics.counted.Inc()
	case Duplicate:
		p.metrics.duplicate.Inc()
	case Late:
		p.metrics.late.Inc()
		p.logLate(&d.Event, now)
	case Future:
		p.metrics.future.Inc()
		p.log.Warn("call event created in the future; not counted", "event_id", d.Event.EventID,
			"creation_time", d.Event.CreationTime, "max_clock_skew", maxClockSkew)
	}
	return p.flush(ctx)
}

func (p *Plugin) logLate(ev *schemas.CallEvent, now time.Time) {
	p.late.count++
	if now.Sub(p.late.last) < 10*time.Second {
		return
	}
	p.log.Warn("call events arrived after the grace period and were not counted",
		"count", p.late.count, "last_event_id", ev.EventID, "creation_time", ev.CreationTime,
		"watermark", p.eng.Watermark(), "grace", p.cfg.Grace)
	p.late = lateLog{last: now}
}

// flush turns new notices into outbox items, saves the state when it
// changed, publishes to the alerts topic and hands notices to the
// notifiers. The state is saved before anything is sent, so a restart never
// finds a sent notice unrecorded. Only a failed save is an error: the call
// must not be acknowledged before its consequences are durable. Called with
// mu held.
func (p *Plugin) flush(ctx context.Context) error {
	for _, n := range p.eng.TakeNotices() {
		p.metrics.transitions.WithLabelValues(n.Alert.Rule, n.Kind).Inc()
		item := outboxItem{Notice: n}
		if n.Kind != KindReminder {
			item.Pending = append(item.Pending, destTopic)
		}
		for _, q := range p.queues {
			item.Pending = append(item.Pending, q.name)
		}
		if len(item.Pending) > 0 {
			p.outbox = append(p.outbox, item)
		}
		p.dirty = true
	}
	p.applyConfirmations()
	if p.dirty {
		if err := p.save(ctx); err != nil {
			return err
		}
	}
	for i := range p.outbox {
		it := &p.outbox[i]
		if slices.Contains(it.Pending, destTopic) {
			if err := p.publish(&it.Notice); err != nil {
				// The notice is saved in the outbox: acknowledging the call
				// is safe, and the next tick publishes it. Later notices
				// wait, so one alert's events stay in order.
				p.logPublishErr(err)
				break
			}
			it.Pending = slices.DeleteFunc(it.Pending, func(s string) bool { return s == destTopic })
			p.dirty = true
		}
		for _, q := range p.queues {
			k := it.Notice.ID + "\x00" + q.name
			if slices.Contains(it.Pending, q.name) && !p.queued[k] {
				p.queued[k] = true
				q.enqueue(it.Notice)
			}
		}
	}
	p.dropDone()
	return nil
}

func (p *Plugin) logPublishErr(err error) {
	now := p.now()
	if now.Sub(p.lastPublishErr) < 10*time.Second {
		return
	}
	p.lastPublishErr = now
	p.log.Error("alert events not published yet; will retry", "err", err)
}

func (p *Plugin) confirm(dest, id string) {
	p.cmu.Lock()
	p.confirmed = append(p.confirmed, confirmation{dest: dest, id: id})
	p.cmu.Unlock()
}

// applyConfirmations removes confirmed destinations from the outbox.
func (p *Plugin) applyConfirmations() {
	p.cmu.Lock()
	done := p.confirmed
	p.confirmed = nil
	p.cmu.Unlock()
	for _, c := range done {
		delete(p.queued, c.id+"\x00"+c.dest)
		for i := range p.outbox {
			it := &p.outbox[i]
			if it.Notice.ID == c.id {
				it.Pending = slices.DeleteFunc(it.Pending, func(s string) bool { return s == c.dest })
				p.dirty = true
			}
		}
	}
	p.dropDone()
}

func (p *Plugin) dropDone() {
	p.outbox = slices.DeleteFunc(p.outbox, func(it outboxItem) bool { return len(it.Pending) == 0 })
}

func (p *Plugin) save(ctx context.Context) error {
	if p.deps.State == nil {
		p.dirty = false
		return nil
	}
	s := p.eng.snapshot()
	s.Outbox = p.outbox
	data, err := encodeState(s)
	if err == nil {
		err = p.deps.State.Save(ctx, stateKey, data)
	}
	if err != nil {
		p.metrics.stateSaves.WithLabelValues("error").Inc()
		return fmt.Errorf("alerting: save state %q: %w", stateKey, err)
	}
	p.metrics.stateSaves.WithLabelValues("ok").Inc()
	p.dirty = false
	return nil
}

// publish sends one transition to the alerts topic in the CloudEvents
// binary binding, keyed by alert_id so one alert's events stay in order.
func (p *Plugin) publish(n *Notice) error {
	if p.deps.Publisher == nil {
		return nil
	}
	payload, err := json.Marshal(&n.Alert)
	if err != nil {
		return fmt.Errorf("alerting: encode alert %s: %w", n.Alert.AlertID, err)
	}
	msg := message.NewMessage(n.ID, payload)
	msg.Metadata.Set(schemas.HeaderSpecVersion, schemas.SpecVersion)
	msg.Metadata.Set(schemas.HeaderID, n.ID)
	msg.Metadata.Set(schemas.HeaderSource, p.cfg.Source)
	msg.Metadata.Set(schemas.HeaderType, n.Alert.Type())
	msg.Metadata.Set(schemas.HeaderTime, n.At.Format(time.RFC3339Nano))
	msg.Metadata.Set(schemas.HeaderSubject, n.Alert.AlertID)
	msg.Metadata.Set(schemas.HeaderContentType, schemas.JSONContentType)
	msg.Metadata.Set(schemas.KeyMetadata, n.Alert.AlertID)
	if err := p.deps.Publisher.Publish(p.deps.Topics.Alerts, msg); err != nil {
		return fmt.Errorf("alerting: publish alert %s (%s) to %s: %w", n.Alert.AlertID, n.Kind, p.deps.Topics.Alerts, err)
	}
	return nil
}

// Run delivers notifications, lets idle partitions go and saves confirmed
// deliveries until ctx is done.
func (p *Plugin) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	p.runMu.Lock()
	p.cancel = cancel
	p.runMu.Unlock()
	defer cancel()
	for _, q := range p.queues {
		p.wg.Go(func() { q.run(ctx) })
	}
	if p.am != nil {
		p.wg.Go(func() { p.am.run(ctx) })
	}
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		p.tick(ctx)
		select {
		case <-ctx.Done():
			p.wg.Wait()
			return nil
		case <-t.C:
		}
	}
}

func (p *Plugin) tick(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eng.Tick(p.now())
	if err := p.flush(ctx); err != nil && ctx.Err() == nil {
		p.log.Error("alert state not saved; will retry", "err", err)
	}
	if wm := p.eng.Watermark(); !wm.IsZero() {
		p.metrics.watermark.Set(float64(wm.UnixNano()) / 1e9)
	}
	p.metrics.active.Reset()
	for k, n := range p.eng.ActiveAlerts() {
		p.metrics.active.WithLabelValues(k[0], k[1]).Set(float64(n))
	}
}

// Close stops the notifiers and saves the state one last time.
func (p *Plugin) Close() error {
	p.runMu.Lock()
	if p.cancel != nil {
		p.cancel()
	}
	p.runMu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applyConfirmations()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.save(ctx)
}
