package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/telemetry"
)

// cmdDLQ handles the dead-letter topic: `callstream dlq replay` puts
// poisoned messages back on their original topics after a fix.
func cmdDLQ(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "replay" {
		return fmt.Errorf("%w: want `dlq replay [--limit N] [--dry-run]`", errUsage)
	}
	var (
		limit  int
		dryRun bool
		idle   time.Duration
	)
	cfg, _, err := loadConfig(e, "dlq replay", args[1:], []string{"kafka", "consumers"}, func(fs *flag.FlagSet) {
		fs.IntVar(&limit, "limit", 0, "replay at most this many records (0: the whole backlog)")
		fs.BoolVar(&dryRun, "dry-run", false, "list what would be replayed; publish and commit nothing")
		fs.DurationVar(&idle, "idle", 15*time.Second, "stop when no record arrives for this long")
	})
	if err != nil {
		return err
	}
	if limit < 0 {
		return fmt.Errorf("%w: --limit must not be negative", errUsage)
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return fmt.Errorf("%w: the DLQ lives on Kafka: set KAFKA_BROKERS (or kafka.brokers in the config file)", errUsage)
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(e.stderr, cfg.Log)
	if err != nil {
		return err
	}
	topics := consumers.NewTopics(cfg.TopicPrefix)
	rc := consumers.ReplayConfig{
		Kafka:  cfg.Kafka,
		DLQ:    topics.DLQ,
		Group:  cfg.Consumers.GroupID("dlq-replay"),
		Limit:  limit,
		DryRun: dryRun,
		Idle:   idle,
		Logger: logger,
	}
	if dryRun {
		rc.OnRecord = func(r consumers.ReplayRecord) {
			fmt.Fprintf(e.stdout, "%d/%d -> %s (was %s/%s, handler %s): %s\n",
				r.Partition, r.Offset, r.Topic, r.OriginPartition, r.OriginOffset, r.Handler, r.Reason)
		}
	} else {
		pcfg := kafkabus.DefaultPublisherConfig()
		pcfg.Config = cfg.Kafka
		pub, err := kafkabus.NewPublisher(pcfg, watermill.NewSlogLogger(logger))
		if err != nil {
			return err
		}
		defer pub.Close()
		rc.Publisher = pub
	}
	stats, err := consumers.ReplayDLQ(ctx, rc)
	verb := "replayed"
	n := stats.Replayed
	if dryRun {
		verb, n = "would replay", stats.Read-stats.Skipped
	}
	fmt.Fprintf(e.stdout, "%s: backlog %d, read %d, %s %d, skipped %d (no original topic)\n",
		topics.DLQ, stats.Backlog, stats.Read, verb, n, stats.Skipped)
	names := make([]string, 0, len(stats.ByTopic))
	for t := range stats.ByTopic {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		fmt.Fprintf(e.stdout, "  %s: %d\n", t, stats.ByTopic[t])
	}
	return err
}
