package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// KV is a small key-value store in a compacted topic with one partition:
// the last record of each key is its value, a tombstone deletes it. The
// producer keeps its checkpoints in one, the consumers their plug-ins'
// state in another, so no callstream process needs a disk. Load reads the
// whole topic, which suits small, rarely read state (a few MB).
type KV struct {
	cfg    Config
	topic  string
	writer *kafka.Writer
}

// kvFormatV1 is the first byte of every value KV writes, so an empty value
// is not mistaken for a tombstone (a null value, which compaction deletes).
// Values without it are read as they are: the producer's checkpoints were
// written as bare JSON before.
const kvFormatV1 = 0x01

// NewKV creates the compacted topic when missing and returns a store on it.
func NewKV(ctx context.Context, cfg Config, topic string) (*KV, error) {
	err := EnsureTopic(ctx, cfg, TopicSpec{
		Name:       topic,
		Partitions: 1,
		// Compact promptly (some state is saved every second), but never
		// before a minute: a reader catching up must see every key.
		Configs: map[string]string{
			"cleanup.policy": "compact", "segment.ms": "600000",
			"min.cleanable.dirty.ratio": "0.1", "min.compaction.lag.ms": "60000",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("kafkabus: state topic: %w", err)
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
	return &KV{cfg: cfg, topic: topic, writer: w}, nil
}

// Topic returns the store's topic.
func (s *KV) Topic() string { return s.topic }

// Load returns the latest value of every key.
func (s *KV) Load(ctx context.Context) (map[string][]byte, error) {
	values := map[string][]byte{}
	err := ReadRange(ctx, s.cfg, s.topic, nil, func(m kafka.Message) error {
		switch {
		case m.Value == nil:
			delete(values, string(m.Key))
		case len(m.Value) > 0 && m.Value[0] == kvFormatV1:
			values[string(m.Key)] = append([]byte{}, m.Value[1:]...)
		default:
			values[string(m.Key)] = append([]byte{}, m.Value...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kafkabus: load %s: %w", s.topic, err)
	}
	return values, nil
}

// Put writes entries in one batch and returns once every in-sync replica
// has them. A nil value deletes its key.
func (s *KV) Put(ctx context.Context, entries map[string][]byte) error {
	if len(entries) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, 0, len(entries))
	for k, v := range entries {
		if k == "" {
			return errors.New("kafkabus: state key is empty")
		}
		m := kafka.Message{Key: []byte(k)}
		if v != nil {
			m.Value = append([]byte{kvFormatV1}, v...)
		}
		msgs = append(msgs, m)
	}
	if err := s.writer.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("kafkabus: save %d keys to %s: %w", len(msgs), s.topic, err)
	}
	return nil
}

// Close releases the store's connections.
func (s *KV) Close() error {
	err := s.writer.Close()
	if tr, ok := s.writer.Transport.(*kafka.Transport); ok {
		tr.CloseIdleConnections()
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("kafkabus: close %s: %w", s.topic, err)
	}
	return nil
}
