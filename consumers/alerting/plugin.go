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
	"github.com/prometheus/client_golang/prometheus"

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

// pausedInterval is how often org_paused rules read the producer's
// callstream_producer_org_paused gauge. Gathering a registry costs a few
// hundred microseconds; the rules' for is minutes.
const pausedInterval = 5 * time.Second

// resolvedRetention is how long a resolved alert stays in the per-alert
// metrics, so a status page can show what resolved recently.
const resolvedRetention = time.Hour

// pausedMetric is the producer's gauge org_paused rules read.
const pausedMetric = "callstream_producer_org_paused"

// Factory returns the runtime's factory for the alerting plug-in.
func Factory(cfg Config) consumers.Factory {
	return consumers.Factory{Name: Name, New: func(deps consumers.Deps) (consumers.Plugin, error) {
		return New(cfg, deps)
	}}
}

// Plugin evaluates the alerting rules on call events and publishes and
// notifies alert transitions. Handle and HandleBatch are serialised:
// evaluation is one ordered computation.
type Plugin struct {
	cfg     Config
	deps    consumers.Deps
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	// gatherer is where org_paused rules find the producer's gauge; nil
	// leaves them silent. pausedEvery is how often they read it.
	gatherer    prometheus.Gatherer
	pausedEvery time.Duration
	lastPaused  time.Time

	mu     sync.Mutex
	eng    *engine
	outbox []outboxItem
	queued map[string]bool // notice id + destination handed to a queue by this process
	dirty  bool
	// late rate-limits the warning about calls the producer read in time
	// that still arrived after the grace period; lateRead the debug line
	// about calls the producer itself read late (rescans, updates).
	late, lateRead logEvery
	// resolved are the alerts resolved by this process, kept in the
	// per-alert metrics for resolvedRetention.
	resolved []resolvedAlert
	// publishErr rate-limits the log line about a failing alerts topic.
	publishErr logEvery

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

// logEvery rate-limits a log line to one per logInterval, counting the
// events each line stands for: a flood of late calls is one line every
// 10 s saying how many there were, not a line per call.
type logEvery struct {
	last  time.Time
	count int
}

const logInterval = 10 * time.Second

// note counts one event at now and reports whether to log it, with the
// number of events since the last line.
func (l *logEvery) note(now time.Time) (count int, ok bool) {
	l.count++
	if now.Sub(l.last) < logInterval {
		return 0, false
	}
	count = l.count
	*l = logEvery{last: now}
	return count, true
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
	now := cfg.Clock
	if now == nil {
		now = time.Now
	}
	p := &Plugin{cfg: cfg, deps: deps, log: deps.Logger.With("consumer", Name), metrics: m, now: now,
		gatherer: gathererOf(deps), pausedEvery: pausedInterval, eng: newEngine(cfg), queued: map[string]bool{}}
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

// gathererOf returns where org_paused rules read the producer's
// callstream_producer_org_paused gauge: the runtime's registry, passed as
// Deps.Registerer, when it can also be gathered (a *prometheus.Registry, as
// in both modes today). In embedded mode the producer registers on that
// same registry. In Kafka mode it runs in another process, the gauge is
// absent and org_paused rules stay silent: alert on the producer's own
// /metrics there (see the package documentation).
func gathererOf(d consumers.Deps) prometheus.Gatherer {
	g, _ := d.Registerer.(prometheus.Gatherer)
	return g
}

// Name implements consumers.Plugin.
func (p *Plugin) Name() string { return Name }

// Tuning asks for large batches: HandleBatch costs about the same per
// batch whatever its size (one lock, one save), and a batch is put back in
// order before it is counted. The wait is short because an alert waits
// for its batch.
func (p *Plugin) Tuning() consumers.Tuning {
	return consumers.Tuning{BatchSize: 1000, BatchWait: 100 * time.Millisecond}
}

// Handle counts one call event, evaluates the steps its arrival closed and
// saves, publishes and notifies what changed. An error (the state could not
// be saved) makes the runtime redeliver the event; the redelivery is
// recognised as a duplicate and only the pending work is retried.
func (p *Plugin) Handle(ctx context.Context, d consumers.Delivery) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n outcomes
	p.observe(&d, p.now(), &n)
	n.record(p.metrics)
	return p.flush(ctx)
}

// HandleBatch is Handle for a batch, under one lock and with one save,
// publish and hand-over to the notifiers at the end. The calls are counted
// in the order the bus delivered them: partition and offset when the
// deliveries have positions (the runtime sorts a batch so). Without
// positions (the in-process bus, whose batches are gathered from
// concurrent deliveries in no order), they are counted in creation_time
// order, which is the order the producer published each org's calls in.
// Every step the watermark passes is evaluated as it passes, as Handle
// would: the alerts are those of one-by-one handling of the same order.
func (p *Plugin) HandleBatch(ctx context.Context, batch []consumers.Delivery) error {
	order := make([]*consumers.Delivery, len(batch))
	positioned := true
	for i := range batch {
		order[i] = &batch[i]
		positioned = positioned && batch[i].HasPosition
	}
	if !positioned {
		slices.SortStableFunc(order, func(a, b *consumers.Delivery) int {
			return a.Event.CreationTime.Compare(b.Event.CreationTime)
		})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var n outcomes
	for _, d := range order {
		p.observe(d, now, &n)
	}
	n.record(p.metrics)
	return p.flush(ctx)
}

// outcomes counts what Observe said, so a batch updates the metrics once.
type outcomes struct{ counted, duplicate, late, future int }

func (n *outcomes) record(m *metrics) {
	for _, c := range []struct {
		c prometheus.Counter
		n int
	}{{m.counted, n.counted}, {m.duplicate, n.duplicate}, {m.late, n.late}, {m.future, n.future}} {
		if c.n > 0 {
			c.c.Add(float64(c.n))
		}
	}
}

// observe counts one delivery. Called with mu held.
func (p *Plugin) observe(d *consumers.Delivery, now time.Time, n *outcomes) {
	partition := ""
	if d.HasPosition {
		partition = strconv.Itoa(int(d.Position.Partition))
	}
	switch p.eng.Observe(partition, &d.Event, now) {
	case Counted:
		n.counted++
	case Duplicate:
		n.duplicate++
	case Late:
		n.late++
		p.logLate(&d.Event, now)
	case Future:
		n.future++
		p.log.Warn("call event created in the future; not counted", "event_id", d.Event.EventID,
			"creation_time", d.Event.CreationTime, "max_clock_skew", maxClockSkew.String())
	}
}

// logLate logs late calls, rate-limited. A call the producer read more
// than grace after its creation (a record the API showed late, an update,
// a rescan's find, history read after a pause) may be late by nature, even
// through a pipeline without delay: the watermark is never more than grace
// behind the newest call read, and so never more than grace behind the
// moment this one was read. Debug level. A call read in time that still arrived after the
// grace period points at the pipeline (a grace below the producer's poll
// interval, a source gone idle too early): a warning.
func (p *Plugin) logLate(ev *schemas.CallEvent, now time.Time) {
	read := ev.ObservedAt.Sub(ev.CreationTime)
	if read > p.cfg.Grace {
		if n, ok := p.lateRead.note(now); ok {
			p.log.Debug("call events the producer read after the grace period were not counted (late records, updates, rescans)",
				"count", n, "last_event_id", ev.EventID, "creation_time", ev.CreationTime, "read_after", read.String(),
				"watermark", p.eng.Watermark(), "grace", p.cfg.Grace.String())
		}
		return
	}
	if n, ok := p.late.note(now); ok {
		p.log.Warn("call events arrived after the grace period and were not counted",
			"count", n, "last_event_id", ev.EventID, "creation_time", ev.CreationTime,
			"watermark", p.eng.Watermark(), "grace", p.cfg.Grace.String())
	}
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
		if n.Kind == KindResolved {
			p.resolved = append(p.resolved, resolvedAlert{view: viewOf(&n.Alert), expires: p.now().Add(resolvedRetention)})
		}
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
	p.publishPending()
	for i := range p.outbox {
		it := &p.outbox[i]
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
	if n, ok := p.publishErr.note(p.now()); ok {
		p.log.Error("alert events not published yet; will retry", "failures", n, "err", err)
	}
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
		// The store is at fault, not the calls: the runtime retries for as
		// long as it takes instead of dead-lettering them.
		return consumers.Transient(fmt.Errorf("alerting: save state %q: %w", stateKey, err))
	}
	p.metrics.stateSaves.WithLabelValues("ok").Inc()
	p.dirty = false
	return nil
}

// publishPending publishes every outbox notice still pending for the
// alerts topic in one call, in outbox order: an incident that moves many
// alerts at once costs one round trip to the bus, not one per alert. If the
// call fails the notices stay in the outbox (acknowledging the calls is
// safe) and the next flush or tick publishes them again, all of them, so
// one alert's events stay in order; a partial write is repeated with the
// same ids.
func (p *Plugin) publishPending() {
	var items []*outboxItem
	var msgs []*message.Message
	for i := range p.outbox {
		it := &p.outbox[i]
		if !slices.Contains(it.Pending, destTopic) {
			continue
		}
		msg, err := p.alertMessage(&it.Notice)
		if err != nil {
			p.logPublishErr(err)
			break // later notices wait behind this one
		}
		items, msgs = append(items, it), append(msgs, msg)
	}
	if len(msgs) == 0 {
		return
	}
	if p.deps.Publisher != nil {
		if err := p.deps.Publisher.Publish(p.deps.Topics.Alerts, msgs...); err != nil {
			p.logPublishErr(fmt.Errorf("alerting: publish %d alert events to %s: %w", len(msgs), p.deps.Topics.Alerts, err))
			return
		}
	}
	for _, it := range items {
		it.Pending = slices.DeleteFunc(it.Pending, func(s string) bool { return s == destTopic })
	}
	p.dirty = true
}

// alertMessage encodes one transition for the alerts topic in the
// CloudEvents binary binding, keyed by alert_id so one alert's events stay
// in order.
func (p *Plugin) alertMessage(n *Notice) (*message.Message, error) {
	payload, err := json.Marshal(&n.Alert)
	if err != nil {
		return nil, fmt.Errorf("alerting: encode alert %s: %w", n.Alert.AlertID, err)
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
	return msg, nil
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
		p.checkPaused(ctx)
		select {
		case <-ctx.Done():
			p.wg.Wait()
			return nil
		case <-t.C:
		}
	}
}

// flushOrLog flushes from a timer, where no delivery waits for the save
// to fail: a failure is logged and the next flush saves again. Called
// with mu held.
func (p *Plugin) flushOrLog(ctx context.Context) {
	if err := p.flush(ctx); err != nil && ctx.Err() == nil {
		p.log.Error("alert state not saved; will retry", "err", err)
	}
}

func (p *Plugin) tick(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.eng.Tick(now)
	p.flushOrLog(ctx)
	if wm := p.eng.Watermark(); !wm.IsZero() {
		p.metrics.watermark.Set(float64(wm.UnixNano()) / 1e9)
	}
	// Every rule and state reads 0 rather than vanishing when nothing is
	// pending or firing.
	active := p.eng.ActiveAlerts()
	for _, r := range p.cfg.Rules {
		for _, st := range []string{stateNames[statePending], stateNames[stateFiring]} {
			p.metrics.active.WithLabelValues(r.Name, st).Set(float64(active[[2]string{r.Name, st}]))
		}
	}
	p.resolved = slices.DeleteFunc(p.resolved, func(r resolvedAlert) bool { return !now.Before(r.expires) })
	p.metrics.alerts.set(p.eng.firingAlerts(), p.resolved)
}

// checkPaused runs the org_paused rules on the producer's gauge, at most
// every pausedEvery. The registry is gathered without mu held: gathering
// collects this plug-in's metrics too.
func (p *Plugin) checkPaused(ctx context.Context) {
	if len(p.eng.paused) == 0 || p.gatherer == nil {
		return
	}
	now := p.now()
	if now.Sub(p.lastPaused) < p.pausedEvery {
		return
	}
	p.lastPaused = now
	paused, err := pausedOrgs(p.gatherer)
	if err != nil {
		p.log.Debug("metrics gathered with errors for org_paused rules", "err", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eng.ObservePaused(now, paused)
	p.flushOrLog(ctx)
}

// pausedOrgs reads callstream_producer_org_paused{org} from g: the orgs
// whose gauge is 1. A gathering error may come with partial results, which
// are used.
func pausedOrgs(g prometheus.Gatherer) (map[string]bool, error) {
	mfs, err := g.Gather()
	out := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != pausedMetric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == LabelOrg && m.GetGauge().GetValue() >= 1 {
					out[l.GetValue()] = true
				}
			}
		}
	}
	return out, err
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
