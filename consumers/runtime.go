package consumers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/schemas"
)

// RuntimeDeps is what a Runtime is built from. The bus-specific parts are
// functions, so the same runtime runs on Kafka (callstream consume) and on
// the in-process GoChannel (callstream run).
type RuntimeDeps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Topics     Topics
	// Plugins are the registered plug-in factories; Config.Enabled and
	// Config.Only choose among them.
	Plugins []Factory
	// Subscribe returns the subscriber a plug-in reads the calls topic
	// with: on Kafka, one in consumer group Config.GroupID(plugin) with
	// tuning.MaxInFlight. The runtime closes it when it stops; wrap a
	// subscriber shared with others in SharedSubscriber.
	Subscribe func(plugin string, tuning Tuning) (message.Subscriber, error)
	// Publisher carries DLQ messages and plug-in output.
	Publisher message.Publisher
	// State returns a plug-in's state store; nil gives plug-ins none.
	State func(plugin string) StateStore
	// Lag, when set, reports a plug-in's consumer lag; the runtime samples
	// it every Config.LagInterval into the callstream_consumer_lag gauge.
	Lag func(ctx context.Context, plugin string) (int64, error)
}

// Runtime runs a set of plug-ins on one watermill Router.
type Runtime struct {
	cfg       Config
	deps      RuntimeDeps
	logger    *slog.Logger
	validator *schemas.Validator
	metrics   *metrics
	plugins   []*entry
	ready     atomic.Bool
	ran       atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

type entry struct {
	name   string
	plugin Plugin
	tuning Tuning
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
		deps.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
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
	r := &Runtime{cfg: cfg, deps: deps, logger: deps.Logger, validator: v, metrics: newMetrics(deps.Registerer)}
	for _, f := range selected {
		pd := Deps{
			Logger:     deps.Logger.With("plugin", f.Name),
			Registerer: deps.Registerer,
			Publisher:  deps.Publisher,
			Topics:     deps.Topics,
		}
		if deps.State != nil {
			pd.State = deps.State(f.Name)
		}
		p, err := f.New(pd)
		if err == nil && p == nil {
			err = errors.New("factory returned no plug-in")
		}
		if err == nil {
			_, h := p.(Handler)
			_, bh := p.(BatchHandler)
			if !h && !bh {
				err = fmt.Errorf("plug-in %T implements neither Handler nor BatchHandler", p)
				closePlugin(p)
			}
		}
		if err != nil {
			r.closeAll()
			return nil, fmt.Errorf("consumers: build plug-in %s: %w", f.Name, err)
		}
		r.plugins = append(r.plugins, &entry{name: f.Name, plugin: p, tuning: cfg.tuning(p)})
	}
	return r, nil
}

// Plugins returns the names of the plug-ins this runtime runs.
func (r *Runtime) Plugins() []string {
	names := make([]string, len(r.plugins))
	for i, e := range r.plugins {
		names[i] = e.name
	}
	return names
}

// Ready is a readiness check: nil while the router is delivering.
func (r *Runtime) Ready(context.Context) error {
	if !r.ready.Load() {
		return errors.New("consumer router not running")
	}
	return nil
}

// Run delivers events to the plug-ins until ctx is done or a Runner
// plug-in fails, then shuts down gracefully: the router stops taking
// messages, Flusher plug-ins are flushed, and the router waits (up to
// Config.CloseTimeout) for the messages in flight, whose batches finish and
// are acknowledged; then the subscriptions commit what
// was acknowledged and close, Runner plug-ins are stopped and Closer
// plug-ins closed. Run may be called once; it closes the plug-ins even when
// it fails to start.
func (r *Runtime) Run(ctx context.Context) error {
	if r.ran.Swap(true) {
		return errors.New("consumers: runtime already ran")
	}
	defer r.closeAll() // on early returns; a no-op after the one below

	stopCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	// Plug-ins and the subscriptions outlive ctx: in-flight work must be
	// able to finish, and acknowledged offsets to be committed, after the
	// signal to stop.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	busCtx, cancelBus := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBus()
	// Cancelled when shutdown begins: the handlers stop taking messages
	// (router.Close then waits for those in flight).
	routerCtx, stopIntake := context.WithCancel(context.Background())
	defer stopIntake()

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: r.cfg.CloseTimeout}, watermillLogger{r.logger})
	if err != nil {
		return fmt.Errorf("consumers: new router: %w", err)
	}
	var subs []message.Subscriber
	closeSubs := func() error {
		var errs []error
		for _, s := range subs {
			if err := s.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	batchCtx, stopBatchers := context.WithCancel(context.Background())
	defer stopBatchers()
	var batchWG sync.WaitGroup
	for _, e := range r.plugins {
		sub, err := r.deps.Subscribe(e.name, e.tuning)
		if err != nil {
			cancelBus()
			return errors.Join(fmt.Errorf("consumers: subscriber for %s: %w", e.name, err), closeSubs())
		}
		subs = append(subs, sub)
		var b *batcher
		if bh, ok := e.plugin.(BatchHandler); ok {
			name := e.name
			b = newBatcher(bh, e.tuning.BatchSize, e.tuning.BatchWait, func(n int) {
				r.metrics.batchSize.WithLabelValues(name).Observe(float64(n))
			})
			batchWG.Add(1)
			go func() {
				defer batchWG.Done()
				b.run(batchCtx, workCtx)
			}()
		}
		h := r.handler(e, b, workCtx, stopCtx)
		slots := make(chan struct{}, e.tuning.MaxInFlight)
		router.AddConsumerHandler(e.name, r.deps.Topics.Calls, heldSubscriber{sub: sub, bus: busCtx, slots: slots},
			func(msg *message.Message) error {
				defer func() { <-slots }()
				_, err := h(msg)
				return err
			})
	}

	runCtx, stopRunners := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRunners()
	var runWG sync.WaitGroup
	for _, e := range r.plugins {
		rn, ok := e.plugin.(Runner)
		if !ok {
			continue
		}
		runWG.Add(1)
		go func() {
			defer runWG.Done()
			if err := rn.Run(runCtx); err != nil && runCtx.Err() == nil {
				r.logger.Error("consumer plug-in stopped with an error", "plugin", e.name, "err", err)
				stop(fmt.Errorf("consumers: plug-in %s: %w", e.name, err))
			}
		}()
	}
	var lagWG sync.WaitGroup
	if r.deps.Lag != nil {
		lagWG.Add(1)
		go func() { defer lagWG.Done(); r.sampleLag(stopCtx) }()
	}

	routerDone := make(chan error, 1)
	go func() { routerDone <- router.Run(routerCtx) }()
	select {
	case <-router.Running():
		r.ready.Store(true)
		r.logger.Info("consumers running", "plugins", r.Plugins(), "topic", r.deps.Topics.Calls)
	case err := <-routerDone:
		stop(fmt.Errorf("consumers: router: %w", err))
	case <-stopCtx.Done():
	}

	<-stopCtx.Done()
	r.ready.Store(false)
	r.logger.Info("consumers stopping: waiting for in-flight messages", "timeout", r.cfg.CloseTimeout)
	var errs []error
	if ctx.Err() == nil {
		// Stopped from inside: a Runner or the router failed.
		errs = append(errs, context.Cause(stopCtx))
	}
	stopIntake()
	var flushWG sync.WaitGroup
	for _, e := range r.plugins {
		if f, ok := e.plugin.(Flusher); ok {
			flushWG.Add(1)
			go func() { defer flushWG.Done(); f.Flush() }()
		}
	}
	if err := router.Close(); err != nil {
		errs = append(errs, fmt.Errorf("consumers: close router: %w", err))
	}
	flushWG.Wait()
	select {
	case <-router.Running():
		if err := <-routerDone; err != nil {
			errs = append(errs, fmt.Errorf("consumers: router: %w", err))
		}
	default:
	}
	// Anything still in flight after the timeout is abandoned: its message
	// was not acknowledged, so it is delivered again.
	cancelWork()
	stopBatchers()
	batchWG.Wait()
	cancelBus()
	if err := closeSubs(); err != nil {
		errs = append(errs, fmt.Errorf("consumers: close subscribers: %w", err))
	}
	stopRunners()
	runWG.Wait()
	lagWG.Wait()
	if err := r.closeAll(); err != nil {
		errs = append(errs, err)
	}
	r.logger.Info("consumers stopped")
	return errors.Join(errs...)
}

// handler builds one plug-in's middleware chain, outermost first.
func (r *Runtime) handler(e *entry, b *batcher, work, stop context.Context) message.HandlerFunc {
	inner := func(msg *message.Message) ([]*message.Message, error) {
		ev, ok := eventFrom(msg)
		if !ok {
			return nil, Permanent(errors.New("consumers: message reached the plug-in without a decoded event"))
		}
		d := Delivery{Event: ev, Message: msg}
		d.Position, d.HasPosition = schemas.PositionOf(msg.Metadata)
		if b != nil {
			return nil, b.Do(work, d)
		}
		return nil, e.plugin.(Handler).Handle(work, d)
	}
	failed := r.metrics.attempts.WithLabelValues(e.name)
	return chain(inner,
		recoverMiddleware(r.logger, e.name, "consumer runtime of plug-in "+e.name),
		metricsMiddleware(r.metrics, e.name),
		poisonMiddleware(r.deps.Publisher, r.deps.Topics.DLQ, e.name, r.deps.Topics.Calls, r.logger),
		decodeMiddleware(r.validator),
		retryMiddleware(r.cfg, stop, e.name, func(error) { failed.Inc() }),
		recoverMiddleware(r.logger, e.name, "plug-in "+e.name),
	)
}

func (r *Runtime) sampleLag(ctx context.Context) {
	t := time.NewTicker(r.cfg.LagInterval)
	defer t.Stop()
	for {
		for _, e := range r.plugins {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			lag, err := r.deps.Lag(lctx, e.name)
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
