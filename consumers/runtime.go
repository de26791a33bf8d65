package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/schemas"
)

// RuntimeDeps is what a Runtime is built from. The bus-specific parts are
// functions and small interfaces, so the same runtime runs on Kafka
// (callstream consume) and on the embedded SQLite bus (callstream run).
type RuntimeDeps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Topics     Topics
	// Plugins are the registered plug-in factories; Config.Enabled and
	// Config.Only choose among them.
	Plugins []Factory
	// Subscribe returns a subscriber in consumer group group (a plug-in's
	// is Config.GroupID of its name) allowing maxInFlight unacknowledged
	// messages. The runtime subscribes it to the calls topic and to the
	// plug-in's retry topic, and closes it when it stops. A subscriber that
	// implements BatchSubscriber hands out batches itself; any other is
	// read message by message and batched by the runtime.
	Subscribe func(group string, maxInFlight int) (message.Subscriber, error)
	// Publisher carries DLQ messages and plug-in output.
	Publisher message.Publisher
	// State returns a plug-in's state store; nil gives plug-ins none.
	State func(plugin string) StateStore
	// Lag, when set, reports the plug-ins' consumer lag on the calls topic;
	// the runtime samples it every Config.LagInterval.
	Lag Lagger
}

// BatchSubscriber is a bus that hands out messages in batches (pkg/kafkabus
// and pkg/sqlitebus are): up to maxMessages at a time, or what arrived
// within linger of the first, in order per partition, without a watermill
// message per record. The runtime settles each batch once, with a verdict
// per record.
type BatchSubscriber interface {
	SubscribeBatches(ctx context.Context, topic string, maxMessages int, linger time.Duration) (<-chan *delivery.Batch, error)
}

// Runtime runs a set of plug-ins, each on its own lane: its own
// subscription, batches and retries, so a slow or failing plug-in never
// delays another.
type Runtime struct {
	cfg        Config
	deps       RuntimeDeps
	logger     *slog.Logger
	validator  *schemas.Validator
	metrics    *metrics
	plugins    []*entry
	lanes      []*lane
	delivering atomic.Bool
	ran        atomic.Bool
	closeOnce  sync.Once
	closeErr   error
}

// entry is a built plug-in and what the runtime resolved for it.
type entry struct {
	name   string
	plugin Plugin
	tuning Tuning
	handle batchFunc
	state  StateStore
}

// New selects the plug-ins to run and builds them. On error, the plug-ins
// already built are closed.
func New(cfg Config, deps RuntimeDeps) (*Runtime, error) {
	cfg = cfg.withDefaults()
	if deps.Subscribe == nil || deps.Publisher == nil {
		return nil, errors.New("consumers: runtime needs a Subscribe function and a Publisher")
	}
	if deps.Topics.Calls == "" || deps.Topics.DLQ == "" {
		return nil, errors.New("consumers: runtime needs the calls and DLQ topic names (see NewTopics)")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	selected, err := Select(deps.Plugins, cfg.Enabled, cfg.Only)
	if err != nil {
		return nil, err
	}
	if len(selected) == 0 {
		return nil, errors.New("consumers: no plug-in to run")
	}
	v, err := schemas.NewValidator()
	if err != nil {
		return nil, fmt.Errorf("consumers: %w", err)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Runtime{cfg: cfg, deps: deps, logger: deps.Logger, validator: v, metrics: m}
	for _, f := range selected {
		e, err := r.build(f)
		if err != nil {
			r.closeAll()
			return nil, fmt.Errorf("consumers: build plug-in %s: %w", f.Name, err)
		}
		r.plugins = append(r.plugins, e)
	}
	return r, nil
}

func (r *Runtime) build(f Factory) (*entry, error) {
	pd := Deps{
		Logger:     r.logger.With("plugin", f.Name),
		Registerer: r.deps.Registerer,
		Publisher:  r.deps.Publisher,
		Topics:     r.deps.Topics,
	}
	if r.deps.State != nil {
		pd.State = r.deps.State(f.Name)
	}
	p, err := f.New(pd)
	if err == nil && p == nil {
		err = errors.New("factory returned no plug-in")
	}
	if err != nil {
		return nil, err
	}
	e := &entry{name: f.Name, plugin: p, tuning: r.cfg.tuning(p), state: pd.State}
	switch h := p.(type) {
	case BatchHandler:
		e.handle = h.HandleBatch
	case Handler:
		e.handle = oneByOne(h)
	default:
		closePlugin(p)
		return nil, fmt.Errorf("plug-in %T implements neither Handler nor BatchHandler", p)
	}
	return e, nil
}

// Plugins returns the names of the plug-ins this runtime runs.
func (r *Runtime) Plugins() []string {
	names := make([]string, len(r.plugins))
	for i, e := range r.plugins {
		names[i] = e.name
	}
	return names
}

// Ready is a readiness check: nil while every plug-in's lane is delivering;
// a lane paused by a failing dependency (see Transient) makes it an error
// naming the plug-in and the failure.
func (r *Runtime) Ready(context.Context) error {
	if !r.delivering.Load() {
		return errors.New("consumers not delivering")
	}
	var paused []string
	for _, l := range r.lanes {
		if err := l.pausedBy(); err != nil {
			paused = append(paused, fmt.Sprintf("plug-in %s paused: %v", l.name, err))
		}
	}
	if len(paused) > 0 {
		sort.Strings(paused)
		return errors.New(strings.Join(paused, "; "))
	}
	return nil
}

// Run delivers events to the plug-ins until ctx is done or a Runner
// plug-in fails, then shuts down gracefully. Its phases, in order:
//
//  1. start: Runner plug-ins begin their background work;
//  2. subscribe: every plug-in's lane subscribes to the calls topic and its
//     retry topic;
//  3. deliver: lanes hand batches to their plug-ins, until the stop signal;
//  4. drain: lanes stop taking batches, Flusher plug-ins are flushed, and
//     the batches in flight get up to Config.CloseTimeout to finish; what
//     is still in flight then is abandoned (delivered again next time);
//  5. commit: the subscriptions commit what was acknowledged and close;
//  6. close: Runner plug-ins are stopped, then Closer plug-ins closed.
//
// Run may be called once; it closes the plug-ins even when it fails to
// start.
func (r *Runtime) Run(ctx context.Context) error {
	if r.ran.Swap(true) {
		return errors.New("consumers: runtime already ran")
	}
	defer r.closeAll() // on early returns; a no-op after the one below
	stop, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	runners := r.start(func(err error) { cancel(err) })
	lanes, err := r.subscribe()
	if err != nil {
		return errors.Join(err, runners.stop())
	}
	r.deliver(stop, lanes)
	var errs []error
	if ctx.Err() == nil {
		errs = append(errs, context.Cause(stop)) // stopped from inside: a Runner failed
	}
	r.drain(lanes)
	errs = append(errs, r.commit(lanes), runners.stop(), r.closeAll())
	r.logger.Info("consumers stopped")
	return errors.Join(errs...)
}

// runners are the background loops of Runner plug-ins.
type runners struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// start runs every Runner plug-in on a context of its own, which outlives
// the stop signal (a plug-in's background work, such as the lake's file
// rotation, is needed while in-flight batches finish). A Runner that fails
// calls fail.
func (r *Runtime) start(fail func(error)) *runners {
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runners{cancel: cancel}
	for _, e := range r.plugins {
		rn, ok := e.plugin.(Runner)
		if !ok {
			continue
		}
		rs.wg.Add(1)
		go func() {
			defer rs.wg.Done()
			if err := rn.Run(ctx); err != nil && ctx.Err() == nil {
				r.logger.Error("consumer plug-in stopped with an error", "plugin", e.name, "err", err)
				fail(fmt.Errorf("consumers: plug-in %s: %w", e.name, err))
			}
		}()
	}
	return rs
}

// stop cancels the Runner plug-ins and waits for them.
func (rs *runners) stop() error {
	rs.cancel()
	rs.wg.Wait()
	return nil
}

// subscribe opens every plug-in's lane. On error the lanes opened so far
// are closed.
func (r *Runtime) subscribe() ([]*lane, error) {
	var lanes []*lane
	for _, e := range r.plugins {
		l, err := r.openLane(e)
		if err != nil {
			for _, opened := range lanes {
				_ = opened.close()
			}
			return nil, err
		}
		lanes = append(lanes, l)
	}
	r.lanes = lanes
	return lanes, nil
}

// deliver runs the lanes until stop is done.
func (r *Runtime) deliver(stop context.Context, lanes []*lane) {
	for _, l := range lanes {
		l.start(stop)
	}
	r.delivering.Store(true)
	r.logger.Info("consumers running", "plugins", r.Plugins(), "topic", r.deps.Topics.Calls)
	var lagWG sync.WaitGroup
	if r.deps.Lag != nil {
		lagWG.Add(1)
		go func() { defer lagWG.Done(); r.sampleLag(stop) }()
	}
	<-stop.Done()
	r.delivering.Store(false)
	lagWG.Wait()
}

// drain stops every lane's intake, flushes Flusher plug-ins and waits up to
// Config.CloseTimeout for the batches in flight; then it abandons the rest.
func (r *Runtime) drain(lanes []*lane) {
	r.logger.Info("consumers stopping: waiting for in-flight batches", "timeout", r.cfg.CloseTimeout.String())
	for _, l := range lanes {
		l.stopIntake()
	}
	var wg sync.WaitGroup
	for _, l := range lanes {
		if f, ok := l.plugin.(Flusher); ok {
			wg.Add(1)
			go func() { defer wg.Done(); f.Flush() }()
		}
	}
	done := make(chan struct{})
	go func() {
		for _, l := range lanes {
			l.wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(r.cfg.CloseTimeout):
		r.logger.Warn("consumers: in-flight batches did not finish in time; they will be delivered again", "timeout", r.cfg.CloseTimeout.String())
	}
	for _, l := range lanes {
		l.abandon()
	}
	<-done
	wg.Wait()
}

// commit closes every lane's subscription, which commits what was
// acknowledged.
func (r *Runtime) commit(lanes []*lane) error {
	var errs []error
	for _, l := range lanes {
		if err := l.close(); err != nil {
			errs = append(errs, fmt.Errorf("consumers: close subscriber of %s: %w", l.name, err))
		}
	}
	return errors.Join(errs...)
}

func (r *Runtime) sampleLag(ctx context.Context) {
	t := time.NewTicker(r.cfg.LagInterval)
	defer t.Stop()
	for {
		for _, e := range r.plugins {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			lag, err := r.deps.Lag.Lag(lctx, r.deps.Topics.Calls, r.cfg.GroupID(e.name))
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					r.logger.Debug("consumer lag not sampled", "plugin", e.name, "err", err)
				}
				continue
			}
			r.metrics.lag.WithLabelValues(e.name).Set(float64(lag))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close closes the plug-ins of a runtime that is not going to Run (for
// example when startup fails after New). Run closes them itself; Close after
// Run does nothing. Do not call it while Run is running.
func (r *Runtime) Close() error { return r.closeAll() }

// closeAll closes Closer plug-ins in reverse order of construction, once.
func (r *Runtime) closeAll() error {
	r.closeOnce.Do(func() {
		var errs []error
		for i := len(r.plugins) - 1; i >= 0; i-- {
			e := r.plugins[i]
			if err := closePlugin(e.plugin); err != nil {
				r.logger.Error("closing consumer plug-in failed", "plugin", e.name, "err", err)
				errs = append(errs, fmt.Errorf("consumers: close plug-in %s: %w", e.name, err))
			}
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

func closePlugin(p Plugin) error {
	if c, ok := p.(Closer); ok {
		return c.Close()
	}
	return nil
}
