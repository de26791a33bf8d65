package kafkabus

import (
	"context"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicLog reads one topic back by offset: what the producer's exactly-once
// restore needs of the events topic (see producer.EventLog).
type TopicLog struct {
	cfg   Config
	topic string
}

// NewTopicLog returns a TopicLog over topic.
func NewTopicLog(cfg Config, topic string) *TopicLog { return &TopicLog{cfg: cfg, topic: topic} }

// EndOffsets returns the offset the next record of each partition gets.
func (l *TopicLog) EndOffsets(ctx context.Context) (map[int]int64, error) {
	return EndOffsets(ctx, l.cfg, l.topic)
}

// ReadFrom calls fn with the value of every record from the offsets in from
// (a partition's beginning when missing) up to the end offsets at the time
// of the call. Partitions are read in parallel; fn is called by one
// goroutine at a time, in offset order within a partition.
func (l *TopicLog) ReadFrom(ctx context.Context, from map[int]int64, fn func(value []byte) error) error {
	return ReadRange(ctx, l.cfg, l.topic, from, func(m kafka.Message) error { return fn(m.Value) })
}

// OffsetsAt returns, per partition, the first offset whose record timestamp
// is at or after t (the end offset where there is none).
func (l *TopicLog) OffsetsAt(ctx context.Context, t time.Time) (map[int]int64, error) {
	return OffsetsAt(ctx, l.cfg, l.topic, t)
}
