package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/consumers/lake"
	"github.com/callstream/callstream/pkg/sqlitebus"
	"github.com/callstream/callstream/pkg/telemetry"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// cmdRun is embedded mode: the producer and every enabled consumer in one
// process on the embedded durable bus (a SQLite log), with all state under
// the state directory. Without an API token it polls a built-in simulator, so a
// new user sees events and alerts within seconds.
func cmdRun(ctx context.Context, e *env, args []string) error {
	cfg, _, err := loadConfig(e, "run", args,
		[]string{"unpod", "producer", "simulator", "consumers", "storage", "alerting", "webhooks", "lake"}, nil)
	if err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(e.stderr, cfg.Log)
	if err != nil {
		return err
	}
	if len(cfg.Kafka.Brokers) > 0 {
		logger.Warn("KAFKA_BROKERS is set, but `callstream run` always uses the embedded bus; run `callstream produce` and `callstream consume` for Kafka mode")
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("state directory %s: %w", cfg.StateDir, err)
	}
	reg := telemetry.NewRegistry()
	g, ctx := errgroup.WithContext(ctx)

	if cfg.Unpod.Token == "" {
		demoTiming(cfg)
		url, err := startSimulator(ctx, g, cfg.Simulator, logger)
		if err != nil {
			return err
		}
		cfg.Unpod.BaseURL, cfg.Unpod.Token = url, cfg.Simulator.Token
		fmt.Fprintf(e.stdout, "UNPOD_API_TOKEN is not set: polling the built-in simulator at %s (orgs %v) every %s\n",
			url, cfg.Simulator.Orgs, cfg.Producer.PollInterval)
	}
	ucfg := cfg.Unpod
	ucfg.Logger, ucfg.Registerer = logger, reg
	client, err := unpod.New(ucfg)
	if err != nil {
		return err
	}

	// The durable log in the state directory: what the producer saw
	// acknowledged survives a crash, and every plug-in reads it in its own
	// consumer group from its committed offset, exactly as on Kafka.
	bus, err := openLocal(ctx, cfg, logger, reg)
	if err != nil {
		return err
	}
	defer bus.close()
	topics := consumers.NewTopics(cfg.TopicPrefix)

	rt, err := consumers.New(cfg.Consumers, consumers.RuntimeDeps{
		Logger:     logger,
		Registerer: reg,
		Topics:     topics,
		Plugins:    plugins(cfg),
		Subscribe:  bus.subscribers(),
		Publisher:  bus.publisher(),
		State:      consumers.FileStates(cfg.statePath("consumers")),
		Lag:        bus.lagger(),
	})
	if err != nil {
		return err
	}
	out := &console{w: e.stdout}
	p, err := producer.New(cfg.Producer, producer.Deps{
		Source:     client,
		Publisher:  bus.publisher(),
		Topic:      topics.Calls,
		DLQTopic:   topics.DLQ,
		Store:      producer.NewFileStore(cfg.statePath(producerStateFile)),
		EventLog:   bus.eventLog(topics.Calls),
		Logger:     logger,
		Registerer: reg,
		OnEvent:    out.event,
	})
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	alertSub, err := bus.bus.Subscriber(sqlitebus.SubscriberConfig{InitialOffset: sqlitebus.OffsetLast})
	if err != nil {
		return err
	}
	defer alertSub.Close()
	alerts, err := alertSub.Subscribe(ctx, topics.Alerts)
	if err != nil {
		return err
	}

	ops := telemetry.NewServer(cfg.HTTP, reg, logger)
	ops.AddReadiness("consumers", rt.Ready)
	ops.AddReadiness("api", p.Ready)
	ops.AddReport("orgs", func() any { return p.Sources() })
	if err := serveStatusPage(ctx, g, ops, cfg.HTTP, reg, logger, "callstream run", true, rt.Plugins()); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "consumers: %v; state in %s\n", rt.Plugins(), cfg.StateDir)
	if cfg.HTTP.Listen != "" {
		fmt.Fprintf(e.stdout, "status page: %s/ (live; metrics at /metrics)\n", cfg.HTTP.BaseURL())
	}
	g.Go(func() error { return ops.Run(ctx) })
	g.Go(func() error { return rt.Run(ctx) })
	g.Go(func() error { return p.Run(ctx) })
	g.Go(func() error { out.alerts(ctx, alerts); return nil })
	g.Go(func() error { out.summaries(ctx, reg, 10*time.Second); return nil })
	return g.Wait()
}

// demoTiming starts the simulator's first scripted incident before the
// demo does, so a new user sees an alert fire within two minutes and
// resolve a few minutes later; the producer's defaults are fresh enough
// for the demo as they are. Values the user set are kept.
func demoTiming(cfg *Config) {
	def := DefaultConfig()
	// The grace must stay above the poll interval (consumers/alerting).
	if cfg.Alerting.Grace == def.Alerting.Grace && cfg.Producer.PollInterval < 20*time.Second {
		cfg.Alerting.Grace = 20 * time.Second
	}
	// The daily shape's trough (a fifth of the mean rate at 02:00 UTC)
	// leaves the spike short of the rule's min_volume: the demo runs at the
	// mean rate at any hour.
	if cfg.Simulator.DailyShape == def.Simulator.DailyShape {
		cfg.Simulator.DailyShape = false
	}
	// The missed-call spike began three minutes before the start and runs
	// one more minute, with nine calls in ten missed: the catch-up of the
	// last hour holds enough of it even though the first read of a minute
	// misses its late records and shows some missed calls as failed, so
	// the alert fires as soon as the startup hold lets the clock move
	// (alerting.startup_hold, a minute after the first call) and resolves
	// about three minutes later.
	if len(cfg.Simulator.Incidents) > 0 && len(def.Simulator.Incidents) > 0 &&
		cfg.Simulator.Incidents[0] == def.Simulator.Incidents[0] {
		cfg.Simulator.Incidents = append([]unpodsim.Incident(nil), cfg.Simulator.Incidents...)
		cfg.Simulator.Incidents[0].After = -3 * time.Minute
		cfg.Simulator.Incidents[0].Duration = 4 * time.Minute
		cfg.Simulator.Incidents[0].Intensity = 0.9
	}
	// On a simulated clock (producer.sim_clock) the simulator and alerting
	// run on the producer's clock too, or they would disagree on what
	// "now" is.
	if clock, err := producer.ParseSimClock(cfg.Producer.SimClock); err == nil && cfg.Producer.SimClock != "" {
		if cfg.Simulator.Clock == nil {
			cfg.Simulator.Clock = clock.Now
		}
		if cfg.Alerting.Clock == nil {
			cfg.Alerting.Clock = clock.Now
		}
	}
}

// lakeDir puts the lake under the state directory unless it was configured.
func lakeDir(cfg *Config) string {
	if cfg.Lake.Dir == lake.DefaultConfig().Dir {
		return filepath.Join(cfg.StateDir, "lake")
	}
	return cfg.Lake.Dir
}

func startSimulator(ctx context.Context, g *errgroup.Group, sim unpodsim.Config, logger *slog.Logger) (string, error) {
	sim.Logger = logger.With("component", "simulator")
	srv, err := unpodsim.New(sim)
	if err != nil {
		return "", fmt.Errorf("simulator: %w", err)
	}
	url, wait, err := srv.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("simulator: %w", err)
	}
	g.Go(wait)
	return url, nil
}

// console prints what a person watching `make run` wants to see: the first
// few events in full, then a summary line every few seconds, and every alert.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	shown int
}

const eventsShown = 5

func (c *console) event(ev *schemas.CallEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shown >= eventsShown {
		return
	}
	c.shown++
	fmt.Fprintf(c.w, "event %s org=%s call=%s rev=%d %s %s %s->%s created=%s\n", ev.Type(), ev.Org, ev.CallKey,
		ev.Revision, ev.CallType, ev.CallStatus, ev.SourceNumber, ev.DestinationNumber, ev.CreationTime.Format(time.RFC3339))
	if c.shown == eventsShown {
		fmt.Fprintln(c.w, "(further events are summarised every 10s)")
	}
}

func (c *console) summaries(ctx context.Context, reg prometheus.Gatherer, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		line, err := summaryLine(reg)
		if err != nil {
			continue
		}
		c.mu.Lock()
		fmt.Fprintln(c.w, line)
		c.mu.Unlock()
	}
}

// summaryLine says what every stage did so far, from the process's metrics
// (the same figures as /metrics and the status page).
func summaryLine(reg prometheus.Gatherer) (string, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return "", err
	}
	sum := func(name string, match ...string) float64 {
		var v float64
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		next:
			for _, m := range mf.Metric {
				for i := 0; i+1 < len(match); i += 2 {
					found := false
					for _, l := range m.Label {
						found = found || (l.GetName() == match[i] && l.GetValue() == match[i+1])
					}
					if !found {
						continue next
					}
				}
				switch {
				case m.Counter != nil:
					v += m.Counter.GetValue()
				case m.Gauge != nil:
					v += m.Gauge.GetValue()
				}
			}
		}
		return v
	}
	return fmt.Sprintf("summary: %.0f records read, %.0f events published, %.0f duplicates dropped, %.0f dead-lettered | "+
		"storage %.0f rows written | lake %.0f rows in %.0f files | webhooks %.0f delivered, %.0f waiting | "+
		"alerts %.0f firing | DLQ %.0f",
		sum("callstream_producer_records_read_total"), sum("callstream_producer_events_published_total"),
		sum("callstream_producer_duplicates_dropped_total"), sum("callstream_producer_dead_lettered_total"),
		sum("callstream_storage_events_total", "outcome", "applied"),
		sum("callstream_lake_rows_written_total"), sum("callstream_lake_files_written_total"),
		sum("callstream_webhooks_outcomes_total", "outcome", "delivered"), sum("callstream_webhooks_queued"),
		sum("callstream_alerting_alerts", "state", "firing"),
		sum("callstream_consumer_messages_total", "outcome", "poisoned")+sum("callstream_producer_dead_lettered_total")+
			sum("callstream_webhooks_outcomes_total", "outcome", "dlq")), nil
}

func (c *console) alerts(ctx context.Context, msgs <-chan *message.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			var a schemas.AlertEvent
			if err := json.Unmarshal(m.Payload, &a); err == nil {
				c.mu.Lock()
				fmt.Fprintf(c.w, "ALERT %s %s %v value=%.3g threshold=%.3g window=%s since=%s\n", a.State, a.Rule, a.Group,
					a.Value, a.Threshold, a.Window, a.StartsAt.Format(time.RFC3339))
				c.mu.Unlock()
			}
			m.Ack()
		}
	}
}
