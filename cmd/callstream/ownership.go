package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// groupOwnership gives a producer its share of the organizations through
// the producers' Kafka consumer group.
type groupOwnership struct{ g *kafkabus.GroupOwner }

// Run implements producer.Ownership.
func (o groupOwnership) Run(ctx context.Context, hold func(context.Context, producer.Lease)) error {
	return o.g.Run(ctx, func(ctx context.Context, l *kafkabus.Lease) { hold(ctx, l) })
}

func (o groupOwnership) close() { _ = o.g.Close() }

// producerGroup is the producers' consumer group: group_id, behind the
// topic prefix when that is not the default, so that pipelines sharing a
// cluster do not share producers.
func producerGroup(cfg *Config) string {
	if cfg.TopicPrefix == schemas.DefaultTopicPrefix {
		return cfg.Producer.GroupID
	}
	return cfg.TopicPrefix + cfg.Producer.GroupID
}

// producerOwnership joins `callstream produce` to the producers' group,
// creating the ownership topic when missing.
func producerOwnership(ctx context.Context, cfg *Config, k *kafkaBus, logger *slog.Logger) (groupOwnership, error) {
	g, err := kafkabus.NewGroupOwner(ctx, k.cfg, kafkabus.OwnerConfig{
		Group:          producerGroup(cfg),
		Topic:          schemas.TopicName(cfg.TopicPrefix, schemas.ProducerOrgsTopic),
		Partitions:     cfg.Producer.OrgPartitions,
		SessionTimeout: cfg.Producer.GroupSessionTimeout,
		// Revoked organizations finish their batch and save within this.
		RebalanceTimeout: 3 * cfg.Producer.GroupSessionTimeout,
		Logger:           logger,
	})
	if err != nil {
		return groupOwnership{}, err
	}
	return groupOwnership{g}, nil
}

// fenceStaleWrites makes the broker refuse a write to the calls topic that
// arrives more than half the producers' session timeout after its records'
// timestamp (message.timestamp.before.max.ms). The producer stamps a batch
// with the moment it asked the coordinator to confirm its ownership of the
// org (schemas.FencedAtMetadata), and the coordinator hands the org to
// another producer no sooner than that moment plus the session timeout, so
// a batch that an owner paused past its ownership sends afterwards is
// refused instead of landing after the new owner's events (One owner per
// organization in producer/doc.go). A timely batch has half the session
// timeout to arrive, and clocks of producers and brokers must agree to
// within the other half. Producers sharing the topic should share
// group_session_timeout: the last one to start sets the window.
func fenceStaleWrites(ctx context.Context, cfg *Config, k *kafkaBus, topic string) error {
	window := cfg.Producer.GroupSessionTimeout / 2
	err := kafkabus.SetTopicConfigs(ctx, k.cfg, topic, map[string]string{
		"message.timestamp.type":          "CreateTime",
		"message.timestamp.before.max.ms": strconv.FormatInt(window.Milliseconds(), 10),
	})
	if err != nil {
		return fmt.Errorf("producer: fencing stale writes to %s: %w", topic, err)
	}
	return nil
}

// defaultClientID names this process to the API (unpod.client_id): the
// host name (a pod's name on Kubernetes) and the process id.
func defaultClientID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	return host + "/" + strconv.Itoa(os.Getpid())
}
