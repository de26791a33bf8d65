package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/telemetry"
)

// cmdConsume runs consumer plug-ins against Kafka, each in its own consumer
// group, with their state in the compacted consumer-state topic: a
// stateless process that scales by running more of it.
func cmdConsume(ctx context.Context, e *env, args []string) error {
	var only string
	cfg, _, err := loadConfig(e, "consume", args, []string{"kafka", "consumers"}, func(fs *flag.FlagSet) {
		fs.StringVar(&only, "only", "", "run only these plug-ins, comma-separated (e.g. storage,alerting)")
	})
	if err != nil {
		return err
	}
	if only != "" {
		cfg.Consumers.Only = strings.Split(only, ",")
	}
	return consume(ctx, e, cfg, plugins(cfg))
}

// consume runs the plug-ins of registry that cfg selects.
func consume(ctx context.Context, e *env, cfg *Config, registry []consumers.Factory) error {
	selected, err := consumers.Select(registry, cfg.Consumers.Enabled, cfg.Consumers.Only)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	logger, err := telemetry.NewLogger(e.stderr, cfg.Log)
	if err != nil {
		return err
	}
	reg := telemetry.NewRegistry()
	k, err := openKafka(cfg, "reads from", logger, reg)
	if err != nil {
		return err
	}
	// Closed after the runtime: DLQ and plug-in output are published until
	// the last in-flight message is done.
	defer k.close()
	topics := consumers.NewTopics(cfg.TopicPrefix)
	names := make([]string, len(selected))
	for i, f := range selected {
		names[i] = f.Name
	}
	// The listener comes first: /healthz answers and /readyz says what is
	// missing while the brokers are awaited.
	ops := telemetry.NewServer(cfg.HTTP, reg, logger)
	var running atomic.Pointer[consumers.Runtime]
	ops.AddReadiness("consumers", func(ctx context.Context) error {
		if rt := running.Load(); rt != nil {
			return rt.Ready(ctx)
		}
		return errors.New("starting")
	})
	ops.AddReadiness("kafka", k.ready(topics.DLQ))
	g, gctx := errgroup.WithContext(ctx)
	if err := serveStatusPage(gctx, g, ops, cfg.HTTP, reg, logger, "callstream consume", false, names); err != nil {
		return err
	}
	g.Go(func() error { return ops.Run(gctx) })
	g.Go(func() error {
		if err := k.wait(gctx); err != nil {
			return err
		}
		// Consumers may start before the first producer: create the calls
		// topic as the producer would (same partition setting), so the
		// groups do not start on a missing topic.
		if err := k.ensure(gctx, cfg.Producer.Partitions, topics.Calls); err != nil {
			return err
		}
		if err := k.ensure(gctx, 0, topics.Outputs(names)...); err != nil {
			return err
		}
		state, err := k.consumerState(gctx)
		if err != nil {
			return err
		}
		rt, err := consumers.New(cfg.Consumers, consumers.RuntimeDeps{
			Logger:     logger,
			Registerer: reg,
			Topics:     topics,
			Plugins:    registry,
			Subscribe:  k.subscribers(),
			Publisher:  k.publisher(),
			State:      state,
			Lag:        k.lagger(),
		})
		if err != nil {
			return err
		}
		running.Store(rt)
		return rt.Run(gctx)
	})
	return g.Wait()
}
