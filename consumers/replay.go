package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/schemas"
)

// ReplayConfig configures ReplayDLQ.
type ReplayConfig struct {
	// Kafka is how to reach the brokers.
	Kafka kafkabus.Config
	// DLQ is the dead-letter topic to read (Topics.DLQ).
	DLQ string
	// Group is the consumer group that remembers what was replayed, so a
	// second replay does not put the same records back again.
	Group string
	// Limit stops after this many records; 0 means the whole backlog as it
	// was when the replay started.
	Limit int
	// DryRun reports what would be replayed and changes nothing: no
	// publish, no commit.
	DryRun bool
	// Idle ends the replay when no record arrives for this long (default
	// 15s; joining a new group can take a few seconds).
	Idle time.Duration
	// Publisher puts records back on their original topics.
	Publisher message.Publisher
	// Logger reports skipped records and an early stop; nil discards.
	Logger *slog.Logger
	// OnRecord, when set, is called for each record read, before it is
	// replayed.
	OnRecord func(ReplayRecord)
}

// ReplayRecord describes one DLQ record seen by ReplayDLQ.
type ReplayRecord struct {
	// Partition and Offset locate the record in the DLQ topic.
	Partition int
	Offset    int64
	// Topic, OriginPartition and OriginOffset say where it was consumed
	// from before it was poisoned.
	Topic           string
	OriginPartition string
	OriginOffset    string
	// Handler is the plug-in that gave up, Reason its error.
	Handler string
	Reason  string
}

// ReplayStats counts what a replay did.
type ReplayStats struct {
	Backlog  int64          // DLQ records not yet replayed by Group when it started
	Read     int            // records read (at most the backlog, or Limit)
	Replayed int            // records published back (0 in a dry run)
	Skipped  int            // records without an original topic; committed, not replayed
	ByTopic  map[string]int // replayed (or, in a dry run, replayable) records per topic
}

// ReplayDLQ puts DLQ records back on the topics they were poisoned from,
// with the DLQ metadata removed and the original key kept (so a call's
// revisions stay in one partition). Each record's offset is committed in
// Group only after the broker acknowledged the republished copy: a crash
// mid-replay can replay a record twice (sinks are idempotent by event_id),
// never lose one.
//
// A replayed event reaches every consumer group again, not only the
// plug-in that gave up on it.
func ReplayDLQ(ctx context.Context, cfg ReplayConfig) (ReplayStats, error) {
	stats := ReplayStats{ByTopic: map[string]int{}}
	if cfg.DLQ == "" || cfg.Group == "" || (cfg.Publisher == nil && !cfg.DryRun) {
		return stats, errors.New("consumers: replay needs a DLQ topic, a group and a publisher")
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	next, end, err := groupBacklog(ctx, cfg.Kafka, cfg.DLQ, cfg.Group)
	if err != nil {
		return stats, fmt.Errorf("consumers: replay %s: %w", cfg.DLQ, err)
	}
	for p, e := range end {
		stats.Backlog += max(0, e-next[p])
	}
	target := stats.Backlog
	if cfg.Limit > 0 && int64(cfg.Limit) < target {
		target = int64(cfg.Limit)
	}
	if target == 0 {
		return stats, nil
	}
	dialer, err := cfg.Kafka.Dialer()
	if err != nil {
		return stats, err
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:          cfg.Kafka.Brokers,
		GroupID:          cfg.Group,
		Topic:            cfg.DLQ,
		Dialer:           dialer,
		StartOffset:      kafka.FirstOffset,
		MinBytes:         1,
		MaxBytes:         10 << 20,
		MaxWait:          250 * time.Millisecond,
		JoinGroupBackoff: 500 * time.Millisecond,
	})
	defer r.Close()
	for int64(stats.Read) < target {
		fctx, cancel := context.WithTimeout(ctx, cfg.Idle)
		m, err := r.FetchMessage(fctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return stats, ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				cfg.Logger.Warn("DLQ replay stopped: no record for a while", "idle", cfg.Idle, "read", stats.Read, "expected", target)
				return stats, nil
			}
			return stats, fmt.Errorf("consumers: replay: read %s: %w", cfg.DLQ, err)
		}
		if m.Offset >= end[m.Partition] {
			// Poisoned after the replay started: left for the next one.
			continue
		}
		stats.Read++
		rec := replayRecord(m)
		if cfg.OnRecord != nil {
			cfg.OnRecord(rec)
		}
		if rec.Topic == "" {
			stats.Skipped++
			cfg.Logger.Warn("DLQ record has no original topic; skipped", "partition", m.Partition, "offset", m.Offset)
		} else {
			stats.ByTopic[rec.Topic]++
		}
		if cfg.DryRun {
			continue
		}
		if rec.Topic != "" {
			if err := cfg.Publisher.Publish(rec.Topic, restored(m)); err != nil {
				return stats, fmt.Errorf("consumers: replay DLQ record %d/%d to %s: %w", m.Partition, m.Offset, rec.Topic, err)
			}
			stats.Replayed++
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			return stats, fmt.Errorf("consumers: replay: commit %s %d/%d: %w", cfg.DLQ, m.Partition, m.Offset, err)
		}
	}
	return stats, nil
}

func replayRecord(m kafka.Message) ReplayRecord {
	rec := ReplayRecord{Partition: m.Partition, Offset: m.Offset}
	for _, h := range m.Headers {
		switch h.Key {
		case schemas.DLQTopicMetadata:
			rec.Topic = string(h.Value)
		case schemas.DLQPartitionMetadata:
			rec.OriginPartition = string(h.Value)
		case schemas.DLQOffsetMetadata:
			rec.OriginOffset = string(h.Value)
		case schemas.DLQHandlerMetadata:
			rec.Handler = string(h.Value)
		case schemas.DLQReasonMetadata:
			rec.Reason = string(h.Value)
		}
	}
	return rec
}

// restored rebuilds the message as it was before it was poisoned: the DLQ
// metadata and the delivery metadata of its first life are dropped, the
// record key becomes the partition key again.
func restored(m kafka.Message) *message.Message {
	var uuid string
	md := message.Metadata{}
	for _, h := range m.Headers {
		switch {
		case h.Key == kafkabus.UUIDHeader:
			uuid = string(h.Value)
		case strings.HasPrefix(h.Key, "callstream_dlq_"),
			h.Key == schemas.TopicMetadata, h.Key == schemas.PartitionMetadata,
			h.Key == schemas.OffsetMetadata, h.Key == schemas.TimestampMetadata,
			h.Key == schemas.UnmarshalErrorMetadata:
		default:
			md[h.Key] = string(h.Value)
		}
	}
	if m.Key != nil {
		md[schemas.KeyMetadata] = string(m.Key)
	}
	if uuid == "" {
		uuid = "dlq-" + strconv.Itoa(m.Partition) + "-" + strconv.FormatInt(m.Offset, 10)
	}
	msg := message.NewMessage(uuid, m.Value)
	msg.Metadata = md
	return msg
}
