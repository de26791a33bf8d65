package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/schemas"
)

// Lagger reports how many messages of a topic a consumer group has not
// committed yet (kafkabus.Admin and the embedded bus are Laggers).
type Lagger interface {
	Lag(ctx context.Context, topic, group string) (int64, error)
}

// ReplayConfig configures ReplayDLQ.
type ReplayConfig struct {
	// Topics names the DLQ and the retry topics.
	Topics Topics
	// Group is the consumer group that remembers what was replayed, so a
	// second replay does not put the same records back again.
	Group string
	// Subscribe returns a subscriber in a consumer group (see
	// RuntimeDeps.Subscribe); ReplayDLQ closes it.
	Subscribe func(group string, maxInFlight int) (message.Subscriber, error)
	// Lag gives the DLQ backlog of Group when the replay starts.
	Lag Lagger
	// Publisher puts records on the retry topics.
	Publisher message.Publisher
	// Limit stops after this many records; 0 means the whole backlog as it
	// was when the replay started.
	Limit int
	// DryRun reports what would be replayed and changes nothing: no
	// publish, no commit.
	DryRun bool
	// Idle ends the replay when no record arrives for this long (default
	// 15s; joining a new group can take a few seconds).
	Idle time.Duration
	// Logger reports skipped records and an early stop; nil discards.
	Logger *slog.Logger
	// OnRecord, when set, is called for each record read, before it is
	// replayed.
	OnRecord func(ReplayRecord)
}

// ReplayRecord describes one DLQ record seen by ReplayDLQ.
type ReplayRecord struct {
	// Position locates the record in the DLQ topic.
	Position schemas.Position
	// Topic, OriginPartition and OriginOffset say where it was consumed
	// from before it was poisoned.
	Topic           string
	OriginPartition string
	OriginOffset    string
	// Handler is the plug-in (or the producer) that gave up, Endpoint the
	// webhook endpoint when it was one, Reason the error.
	Handler  string
	Endpoint string
	Reason   string
	// RetryTopic is where the record is replayed to.
	RetryTopic string
}

// ReplayStats counts what a replay did.
type ReplayStats struct {
	Backlog   int64          // DLQ records not yet replayed by Group when it started
	Read      int            // records read (at most the backlog, or Limit)
	Replayed  int            // records published back (0 in a dry run)
	Skipped   int            // records naming no handler; committed, not replayed
	ByHandler map[string]int // replayed (or, in a dry run, replayable) records per handler
}

// maxDryRun bounds a dry run: it holds every record it reads unacknowledged.
const maxDryRun = 100_000

// ReplayDLQ puts dead-lettered records back, each on the retry topic of the
// plug-in that failed it (Topics.Retry of its DLQHandlerMetadata), never on
// the calls topic: no other plug-in, and no other subscriber of the calls
// topic, sees it twice. A webhook record keeps the endpoint that failed it
// (schemas.ReplayEndpointMetadata), so only that endpoint is sent it again;
// a record the producer dead-lettered goes to the producer's retry topic,
// where the producer runs it through its dedup gate again. The record's
// payload, key and other metadata are kept; the DLQ and delivery metadata
// are dropped.
//
// Each record is acknowledged in Group only after the bus accepted its
// republished copy: a crash mid-replay can replay a record twice (the
// plug-ins are idempotent by event_id), never lose one.
func ReplayDLQ(ctx context.Context, cfg ReplayConfig) (ReplayStats, error) {
	stats := ReplayStats{ByHandler: map[string]int{}}
	if cfg.Topics.DLQ == "" || cfg.Group == "" || cfg.Subscribe == nil || cfg.Lag == nil || (cfg.Publisher == nil && !cfg.DryRun) {
		return stats, errors.New("consumers: replay needs the topics, a group, a subscriber, a lag source and a publisher")
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	backlog, err := cfg.Lag.Lag(ctx, cfg.Topics.DLQ, cfg.Group)
	if err != nil {
		return stats, fmt.Errorf("consumers: replay %s: %w", cfg.Topics.DLQ, err)
	}
	stats.Backlog = backlog
	target := backlog
	if cfg.Limit > 0 && int64(cfg.Limit) < target {
		target = int64(cfg.Limit)
	}
	if cfg.DryRun {
		target = min(target, maxDryRun)
	}
	if target == 0 {
		return stats, nil
	}
	inFlight := 100
	if cfg.DryRun {
		inFlight = int(target)
	}
	sub, err := cfg.Subscribe(cfg.Group, inFlight)
	if err != nil {
		return stats, fmt.Errorf("consumers: replay: subscriber: %w", err)
	}
	defer sub.Close()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := sub.Subscribe(rctx, cfg.Topics.DLQ)
	if err != nil {
		return stats, fmt.Errorf("consumers: replay: subscribe to %s: %w", cfg.Topics.DLQ, err)
	}
	idle := time.NewTimer(cfg.Idle)
	defer idle.Stop()
	for int64(stats.Read) < target {
		var msg *message.Message
		select {
		case <-ctx.Done():
			return stats, ctx.Err()
		case <-idle.C:
			cfg.Logger.Warn("DLQ replay stopped: no record for a while", "idle", cfg.Idle.String(), "read", stats.Read, "expected", target)
			return stats, nil
		case m, ok := <-ch:
			if !ok {
				return stats, fmt.Errorf("consumers: replay: subscription to %s ended after %d records", cfg.Topics.DLQ, stats.Read)
			}
			msg = m
		}
		idle.Reset(cfg.Idle)
		stats.Read++
		rec := replayRecord(msg, cfg.Topics)
		if cfg.OnRecord != nil {
			cfg.OnRecord(rec)
		}
		if rec.Handler == "" {
			stats.Skipped++
			cfg.Logger.Warn("DLQ record names no handler; skipped", "partition", rec.Position.Partition, "offset", rec.Position.Offset)
		} else {
			stats.ByHandler[rec.Handler]++
		}
		if cfg.DryRun {
			continue // never acknowledged: nothing is committed
		}
		if rec.Handler != "" {
			if err := cfg.Publisher.Publish(rec.RetryTopic, restored(msg)); err != nil {
				msg.Nack()
				return stats, fmt.Errorf("consumers: replay DLQ record %d/%d to %s: %w", rec.Position.Partition, rec.Position.Offset, rec.RetryTopic, err)
			}
			stats.Replayed++
		}
		msg.Ack()
	}
	return stats, nil
}

func replayRecord(msg *message.Message, topics Topics) ReplayRecord {
	md := msg.Metadata
	rec := ReplayRecord{
		Topic: md.Get(schemas.DLQTopicMetadata), OriginPartition: md.Get(schemas.DLQPartitionMetadata),
		OriginOffset: md.Get(schemas.DLQOffsetMetadata), Handler: md.Get(schemas.DLQHandlerMetadata),
		Endpoint: md.Get(schemas.DLQEndpointMetadata), Reason: md.Get(schemas.DLQReasonMetadata),
	}
	rec.Position, _ = schemas.PositionOf(md)
	if rec.Handler != "" {
		rec.RetryTopic = topics.Retry(rec.Handler)
	}
	return rec
}

// restored rebuilds the message as it was before it was poisoned: the DLQ
// metadata and the delivery metadata of its earlier lives are dropped, the
// record key stays; the endpoint that failed it, if any, is named for the
// replay.
func restored(msg *message.Message) *message.Message {
	out := message.NewMessage(msg.UUID, msg.Payload)
	for k, v := range msg.Metadata {
		switch {
		case strings.HasPrefix(k, schemas.DLQMetadataPrefix), k == schemas.ReplayEndpointMetadata,
			k == schemas.TopicMetadata, k == schemas.PartitionMetadata, k == schemas.OffsetMetadata,
			k == schemas.TimestampMetadata, k == schemas.UnmarshalErrorMetadata:
		default:
			out.Metadata[k] = v
		}
	}
	if ep := msg.Metadata.Get(schemas.DLQEndpointMetadata); ep != "" {
		out.Metadata[schemas.ReplayEndpointMetadata] = ep
	}
	return out
}
