package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill"
	"golang.org/x/sync/errgroup"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/telemetry"
	"github.com/callstream/callstream/schemas"
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
	if _, err := consumers.Select(registry, cfg.Consumers.Enabled, cfg.Consumers.Only); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return fmt.Errorf("%w: this command reads from Kafka: set KAFKA_BROKERS (or kafka.brokers in the config file); `callstream run` uses the in-process bus instead", errUsage)
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(e.stderr, cfg.Log)
	if err != nil {
		return err
	}
	reg := telemetry.NewRegistry()
	topics := consumers.NewTopics(cfg.TopicPrefix)
	if err := consumers.EnsureKafkaTopics(ctx, cfg.Kafka, topics); err != nil {
		return err
	}
	// Consumers may start before the first producer: create the calls
	// topic as the producer would (same partition setting), so the groups
	// do not start on a missing topic.
	if err := kafkabus.EnsureTopic(ctx, cfg.Kafka, kafkabus.TopicSpec{Name: topics.Calls, Partitions: cfg.Producer.Partitions}); err != nil {
		return err
	}
	state, err := consumers.NewTopicState(ctx, cfg.Kafka, schemas.TopicName(cfg.TopicPrefix, consumers.ConsumerStateTopic))
	if err != nil {
		return err
	}
	defer state.Close()
	pcfg := kafkabus.DefaultPublisherConfig()
	pcfg.Config, pcfg.Registerer = cfg.Kafka, reg
	pub, err := kafkabus.NewPublisher(pcfg, watermill.NewSlogLogger(logger))
	if err != nil {
		return err
	}
	// Closed after the runtime: DLQ and plug-in output are published until
	// the last in-flight message is done.
	defer pub.Close()

	rt, err := consumers.New(cfg.Consumers, consumers.RuntimeDeps{
		Logger:     logger,
		Registerer: reg,
		Topics:     topics,
		Plugins:    registry,
		Subscribe:  consumers.KafkaSubscribe(cfg.Kafka, cfg.Consumers, reg, logger),
		Publisher:  pub,
		State:      state.For,
		Lag:        consumers.KafkaLag(cfg.Kafka, cfg.Consumers, topics.Calls),
	})
	if err != nil {
		return err
	}
	ops := telemetry.NewServer(cfg.HTTP, reg, logger)
	ops.AddReadiness("consumers", rt.Ready)
	ops.AddReadiness("kafka", func(ctx context.Context) error {
		_, err := kafkabus.PartitionIDs(ctx, cfg.Kafka, topics.DLQ)
		return err
	})
	g, gctx := errgroup.WithContext(ctx)
	if err := serveStatusPage(gctx, g, ops, cfg.HTTP, reg, logger, "callstream consume", false, rt.Plugins()); err != nil {
		return err
	}
	g.Go(func() error { return rt.Run(gctx) })
	g.Go(func() error { return ops.Run(gctx) })
	return g.Wait()
}
