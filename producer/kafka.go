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
	return listOffsets(ctx, l.cfg, l.topic, kafka.LastOffset)
}

// ReadFrom implements EventLog. Partitions are read concurrently, so fn
// must be safe for concurrent use.
func (l *KafkaEventLog) ReadFrom(ctx context.Context, from map[int]int64, fn func(value []byte) error) error {
	return readRangeParallel(ctx, l.cfg, l.topic, from, func(m kafka.Message) error { return fn(m.Value) })
}

// listOffsets returns the first (kafka.FirstOffset) or end
// (kafka.LastOffset) offset of every partition of topic.
func listOffsets(ctx context.Context, cfg kafkabus.Config, topic string, which int64) (map[int]int64, error) {
	ids, err := kafkabus.PartitionIDs(ctx, cfg, topic)
	if err != nil {
		return nil, err
	}
	client, err := cfg.Client()
	if err != nil {
		return nil, err
	}
	defer func() {
		if tr, ok := client.Transport.(*kafka.Transport); ok {
			tr.CloseIdleConnections()
		}
	}()
	req := make([]kafka.OffsetRequest, len(ids))
	for i, id := range ids {
		req[i] = kafka.OffsetRequest{Partition: id, Timestamp: which}
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}})
	if err != nil {
		return nil, fmt.Errorf("producer: list offsets of %s: %w", topic, err)
	}
	out := make(map[int]int64, len(ids))
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("producer: list offsets of %s partition %d: %w", topic, po.Partition, po.Error)
		}
		if which == kafka.FirstOffset {
			out[po.Partition] = po.FirstOffset
		} else {
			out[po.Partition] = po.LastOffset
		}
	}
	if len(out) != len(ids) {
		return nil, fmt.Errorf("producer: list offsets of %s: %d of %d partitions answered", topic, len(out), len(ids))
	}
	return out, nil
}

// readRange calls fn for every record of topic from the offsets in from
// (the first offset for a partition missing there) up to the end offsets
// at the time of the call, one partition after the other.
func readRange(ctx context.Context, cfg kafkabus.Config, topic string, from map[int]int64, fn func(kafka.Message) error) error {
	return readRanges(ctx, cfg, topic, from, fn, false)
}

// readRangeParallel is readRange with one goroutine per partition.
func readRangeParallel(ctx context.Context, cfg kafkabus.Config, topic string, from map[int]int64, fn func(kafka.Message) error) error {
	return readRanges(ctx, cfg, topic, from, fn, true)
}

func readRanges(ctx context.Context, cfg kafkabus.Config, topic string, from map[int]int64, fn func(kafka.Message) error, parallel bool) error {
	ends, err := listOffsets(ctx, cfg, topic, kafka.LastOffset)
	if err != nil {
		return err
	}
	firsts, err := listOffsets(ctx, cfg, topic, kafka.FirstOffset)
	if err != nil {
		return err
	}
	dialer, err := cfg.Dialer()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(ends))
	running := 0
	for part, end := range ends {
		start, ok := from[part]
		if !ok || start < firsts[part] {
			start = firsts[part]
		}
		if start >= end {
			continue
		}
		if !parallel {
			if err := readPartition(ctx, cfg, dialer, topic, part, start, end, fn); err != nil {
				return err
			}
			continue
		}
		running++
		go func() { errs <- readPartition(ctx, cfg, dialer, topic, part, start, end, fn) }()
	}
	var first error
	for range running {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

func readPartition(ctx context.Context, cfg kafkabus.Config, dialer *kafka.Dialer, topic string, part int, start, end int64, fn func(kafka.Message) error) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   cfg.Brokers,
		Topic:     topic,
		Partition: part,
		Dialer:    dialer,
		MinBytes:  1,
		MaxBytes:  16 << 20,
		MaxWait:   200 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return fmt.Errorf("producer: seek %s partition %d to %d: %w", topic, part, start, err)
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("producer: read %s partition %d at offset %d: %w", topic, part, r.Offset(), err)
		}
		if err := fn(m); err != nil {
			return err
		}
		if m.Offset >= end-1 {
			return nil
		}
	}
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
	err := readRange(ctx, s.cfg, s.topic, nil, func(m kafka.Message) error {
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

// OffsetsAt returns, per partition, the first offset whose record timestamp
// is at or after t (the end offset where there is none).
func (l *KafkaEventLog) OffsetsAt(ctx context.Context, t time.Time) (map[int]int64, error) {
	ends, err := l.EndOffsets(ctx)
	if err != nil {
		return nil, err
	}
	client, err := l.cfg.Client()
	if err != nil {
		return nil, err
	}
	defer func() {
		if tr, ok := client.Transport.(*kafka.Transport); ok {
			tr.CloseIdleConnections()
		}
	}()
	req := make([]kafka.OffsetRequest, 0, len(ends))
	for p := range ends {
		req = append(req, kafka.OffsetRequest{Partition: p, Timestamp: t.UnixMilli()})
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{l.topic: req}})
	if err != nil {
		return nil, fmt.Errorf("producer: offsets of %s at %s: %w", l.topic, t.Format(time.RFC3339), err)
	}
	out := make(map[int]int64, len(ends))
	for p, end := range ends {
		out[p] = end
	}
	for _, po := range res.Topics[l.topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("producer: offsets of %s partition %d at %s: %w", l.topic, po.Partition, t.Format(time.RFC3339), po.Error)
		}
		for off := range po.Offsets {
			if off >= 0 {
				out[po.Partition] = off
			}
		}
	}
	return out, nil
}
