package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
)

// KafkaEventLog reads the events topic back with kafka-go.
type KafkaEventLog struct {
	cfg   kafkabus.Config
	topic string
}

// NewKafkaEventLog returns an EventLog over topic.
func NewKafkaEventLog(cfg kafkabus.Config, topic string) *KafkaEventLog {
	return &KafkaEventLog{cfg: cfg, topic: topic}
}

// EndOffsets implements EventLog.
func (l *KafkaEventLog) EndOffsets(ctx context.Context) (map[int]int64, error) {
	return kafkabus.EndOffsets(ctx, l.cfg, l.topic)
}

// ReadFrom implements EventLog. Partitions are read in parallel; fn is
// called by one goroutine at a time.
func (l *KafkaEventLog) ReadFrom(ctx context.Context, from map[int]int64, fn func(value []byte) error) error {
	return kafkabus.ReadRange(ctx, l.cfg, l.topic, from, func(m kafka.Message) error { return fn(m.Value) })
}

// OffsetsAt returns, per partition, the first offset whose record timestamp
// is at or after t (the end offset where there is none).
func (l *KafkaEventLog) OffsetsAt(ctx context.Context, t time.Time) (map[int]int64, error) {
	return kafkabus.OffsetsAt(ctx, l.cfg, l.topic, t)
}

// KafkaStore keeps checkpoints in a compacted topic, one record per
// organization keyed by its handle, so the producer holds no local state
// and can move between machines.
type KafkaStore struct {
	cfg    kafkabus.Config
	topic  string
	writer *kafka.Writer
}

// stateRecord is the value of one record of the state topic.
type stateRecord struct {
	Version    int           `json:"version"`
	SavedAt    time.Time     `json:"saved_at"`
	Checkpoint *Checkpoint   `json:"checkpoint"`
	Offsets    map[int]int64 `json:"offsets"`
}

// NewKafkaStore creates the compacted state topic if needed and returns a
// store on it.
func NewKafkaStore(ctx context.Context, cfg kafkabus.Config, topic string) (*KafkaStore, error) {
	err := kafkabus.EnsureTopic(ctx, cfg, kafkabus.TopicSpec{
		Name: topic, Partitions: 1,
		Configs: map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
	})
	if err != nil {
		return nil, err
	}
	tr, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		MaxAttempts:  5,
		WriteTimeout: 10 * time.Second,
		Transport:    tr,
	}
	return &KafkaStore{cfg: cfg, topic: topic, writer: w}, nil
}

// Load implements StateStore: the latest record of every organization.
func (s *KafkaStore) Load(ctx context.Context) (*State, error) {
	st := emptyState()
	err := kafkabus.ReadRange(ctx, s.cfg, s.topic, nil, func(m kafka.Message) error {
		org := string(m.Key)
		if m.Value == nil { // a tombstone forgets the organization
			delete(st.Orgs, org)
			return nil
		}
		var rec stateRecord
		if err := json.Unmarshal(m.Value, &rec); err != nil {
			return fmt.Errorf("producer: state record of org %q at offset %d: %w", org, m.Offset, err)
		}
		if rec.Version != stateVersion || rec.Checkpoint == nil || len(rec.Checkpoint.Rungs) == 0 {
			return fmt.Errorf("producer: state record of org %q at offset %d: unsupported version %d or no checkpoint", org, m.Offset, rec.Version)
		}
		rec.Checkpoint.Org = org
		st.Orgs[org] = rec.Checkpoint
		st.Offsets = rec.Offsets // records are written together; the last is the newest
		st.SavedAt = rec.SavedAt
		return nil
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Save implements StateStore: one record per organization, acknowledged by
// every in-sync replica.
func (s *KafkaStore) Save(ctx context.Context, st *State) error {
	msgs := make([]kafka.Message, 0, len(st.Orgs))
	for org, cp := range st.Orgs {
		v, err := json.Marshal(stateRecord{Version: stateVersion, SavedAt: st.SavedAt, Checkpoint: cp, Offsets: st.Offsets})
		if err != nil {
			return fmt.Errorf("producer: encode state of org %s: %w", org, err)
		}
		msgs = append(msgs, kafka.Message{Key: []byte(org), Value: v})
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := s.writer.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("producer: save state to %s: %w", s.topic, err)
	}
	return nil
}

// Close releases the store's connections.
func (s *KafkaStore) Close() error {
	if err := s.writer.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("producer: close state writer: %w", err)
	}
	return nil
}
