package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

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
	k, err := openKafka(cfg, "publishes to", logger, reg)
	if err != nil {
		return err
	}
	defer k.close()
	// The listener comes first: /healthz answers and /readyz says what is
	// missing while the brokers are awaited.
	ops := telemetry.NewServer(cfg.HTTP, reg, logger)
	ops.AddReadiness("kafka", k.ready(schemas.TopicName(cfg.TopicPrefix, schemas.CallsTopic)))
	g, gctx := errgroup.WithContext(ctx)
	if err := serveStatusPage(gctx, g, ops, cfg.HTTP, reg, logger, "callstream produce", true, nil); err != nil {
		return err
	}
	var running atomic.Pointer[producer.Producer]
	ops.AddReadiness("api", func(ctx context.Context) error {
		if p := running.Load(); p != nil {
			return p.Ready(ctx)
		}
		return errors.New("starting")
	})
	ops.AddReport("orgs", func() any {
		if p := running.Load(); p != nil {
			return p.Sources()
		}
		return nil
	})
	ops.AddReport("ownership", func() any {
		if p := running.Load(); p != nil {
			return p.Ownership()
		}
		return nil
	})
	g.Go(func() error { return ops.Run(gctx) })
	g.Go(func() error {
		if err := k.wait(gctx); err != nil {
			return err
		}
		own, err := producerOwnership(gctx, cfg, k, logger)
		if err != nil {
			return err
		}
		defer own.close()
		p, topic, err := buildProducer(gctx, cfg, logger, reg, k, own)
		if err != nil {
			return err
		}
		if err := fenceStaleWrites(gctx, cfg, k, topic); err != nil {
			return err
		}
		running.Store(p)
		return p.Run(gctx)
	})
	return g.Wait()
}

// buildProducer wires a producer to a bus, creating the calls topic when
// the bus needs that.
// own shares the organizations with other producers; nil owns them all.
func buildProducer(ctx context.Context, cfg *Config, logger *slog.Logger, reg *prometheus.Registry, k bus, own producer.Ownership) (*producer.Producer, string, error) {
	ucfg := cfg.Unpod
	ucfg.Logger, ucfg.Registerer = logger, reg
	if ucfg.ClientID == "" {
		ucfg.ClientID = defaultClientID()
	}
	client, err := unpod.New(ucfg)
	if err != nil {
		return nil, "", err
	}
	topic := schemas.TopicName(cfg.TopicPrefix, schemas.CallsTopic)
	if err := k.ensure(ctx, cfg.Producer.Partitions, topic); err != nil {
		return nil, "", err
	}
	dlq := schemas.TopicName(cfg.TopicPrefix, schemas.DLQTopic) // the producer's dead letters go there too
	if err := k.ensure(ctx, 0, dlq); err != nil {
		return nil, "", err
	}
	store, err := k.producerState(ctx)
	if err != nil {
		return nil, "", err
	}
	p, err := producer.New(cfg.Producer, producer.Deps{
		Source:     client,
		Publisher:  k.publisher(),
		Topic:      topic,
		DLQTopic:   dlq,
		Store:      store,
		EventLog:   k.eventLog(topic),
		Logger:     logger,
		Registerer: reg,
		Ownership:  own,
	})
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", errUsage, err)
	}
	return p, topic, nil
}
