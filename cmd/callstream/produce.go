package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/telemetry"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// cmdProduce polls the Unpod API and publishes call events to Kafka, with
// its checkpoint in the compacted state topic: a stateless process.
func cmdProduce(ctx context.Context, e *env, args []string) error {
	cfg, _, err := loadConfig(e, "produce", args, []string{"kafka", "unpod", "producer"}, nil)
	if err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(e.stderr, cfg.Log)
	if err != nil {
		return err
	}
	reg := telemetry.NewRegistry()
	k, err := newKafkaProducer(ctx, cfg, logger, reg)
	if err != nil {
		return err
	}
	defer k.close()

	ops := telemetry.NewServer(cfg.HTTP, reg, logger)
	ops.AddReadiness("kafka", func(ctx context.Context) error {
		_, err := kafkabus.PartitionIDs(ctx, cfg.Kafka, k.topic)
		return err
	})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return k.producer.Run(gctx) })
	g.Go(func() error { return ops.Run(gctx) })
	return g.Wait()
}

// kafkaProducer is a producer wired to Kafka, shared by produce and
// backfill.
type kafkaProducer struct {
	producer *producer.Producer
	topic    string
	pub      *kafkabus.Publisher
	store    *producer.KafkaStore
}

func (k *kafkaProducer) close() {
	k.pub.Close()
	k.store.Close()
}

func newKafkaProducer(ctx context.Context, cfg *Config, logger *slog.Logger, reg *prometheus.Registry) (*kafkaProducer, error) {
	if len(cfg.Kafka.Brokers) == 0 {
		return nil, fmt.Errorf("%w: this command publishes to Kafka: set KAFKA_BROKERS (or kafka.brokers in the config file); `callstream run` uses the in-process bus instead", errUsage)
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return nil, err
	}
	ucfg := cfg.Unpod
	ucfg.Logger, ucfg.Registerer = logger, reg
	client, err := unpod.New(ucfg)
	if err != nil {
		return nil, err
	}
	topic := schemas.TopicName(cfg.TopicPrefix, schemas.CallsTopic)
	if err := kafkabus.EnsureTopic(ctx, cfg.Kafka, kafkabus.TopicSpec{Name: topic, Partitions: cfg.Producer.Partitions}); err != nil {
		return nil, err
	}
	dlq := schemas.TopicName(cfg.TopicPrefix, schemas.DLQTopic) // the producer's dead letters go there too
	if err := kafkabus.EnsureTopic(ctx, cfg.Kafka, kafkabus.TopicSpec{Name: dlq}); err != nil {
		return nil, err
	}
	store, err := producer.NewKafkaStore(ctx, cfg.Kafka, schemas.TopicName(cfg.TopicPrefix, schemas.ProducerStateTopic))
	if err != nil {
		return nil, err
	}
	pcfg := kafkabus.DefaultPublisherConfig()
	pcfg.Config, pcfg.Registerer = cfg.Kafka, reg
	pub, err := kafkabus.NewPublisher(pcfg, watermill.NewSlogLogger(logger))
	if err != nil {
		store.Close()
		return nil, err
	}
	p, err := producer.New(cfg.Producer, producer.Deps{
		Source:     client,
		Publisher:  pub,
		Topic:      topic,
		DLQTopic:   dlq,
		Store:      store,
		EventLog:   producer.NewKafkaEventLog(cfg.Kafka, topic),
		Logger:     logger,
		Registerer: reg,
	})
	if err != nil {
		pub.Close()
		store.Close()
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return &kafkaProducer{producer: p, topic: topic, pub: pub, store: store}, nil
}
