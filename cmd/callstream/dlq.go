package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/telemetry"
)

// cmdDLQ handles the dead-letter topic: `callstream dlq replay` puts
// poisoned messages back, after a fix, each to the plug-in (and webhook
// endpoint) that failed it.
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
	logger, err := telemetry.NewLogger(e.stderr, cfg.Log)
	if err != nil {
		return err
	}
	k, err := openBus(ctx, cfg, "replays the DLQ on", logger, nil)
	if err != nil {
		return err
	}
	defer k.close()
	topics := consumers.NewTopics(cfg.TopicPrefix)
	rc := consumers.ReplayConfig{
		Topics:    topics,
		Group:     cfg.Consumers.GroupID("dlq-replay"),
		Subscribe: k.subscribers(),
		Lag:       k.lagger(),
		Publisher: k.publisher(),
		Limit:     limit,
		DryRun:    dryRun,
		Idle:      idle,
		Logger:    logger,
	}
	if dryRun {
		rc.OnRecord = func(r consumers.ReplayRecord) {
			fmt.Fprintf(e.stdout, "%d/%d -> %s (was %s %s/%s, handler %s%s): %s\n",
				r.Position.Partition, r.Position.Offset, r.RetryTopic, r.Topic, r.OriginPartition, r.OriginOffset,
				r.Handler, endpointNote(r.Endpoint), r.Reason)
		}
	}
	stats, err := consumers.ReplayDLQ(ctx, rc)
	verb := "replayed"
	n := stats.Replayed
	if dryRun {
		verb, n = "would replay", stats.Read-stats.Skipped
	}
	fmt.Fprintf(e.stdout, "%s: backlog %d, read %d, %s %d, skipped %d (no handler named)\n",
		topics.DLQ, stats.Backlog, stats.Read, verb, n, stats.Skipped)
	names := make([]string, 0, len(stats.ByHandler))
	for h := range stats.ByHandler {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		fmt.Fprintf(e.stdout, "  to %s (%s): %d\n", h, topics.Retry(h), stats.ByHandler[h])
	}
	return err
}

func endpointNote(ep string) string {
	if ep == "" {
		return ""
	}
	return ", endpoint " + ep
}
