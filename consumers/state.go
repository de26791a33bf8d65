package consumers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
)

// FileState is a StateStore of one file per key under Dir, for embedded
// mode. Give each plug-in its own Dir (e.g. <state_dir>/consumers/<name>).
// Save is atomic and durable: a crash leaves either the old value or the
// new one, never a torn file.
type FileState struct {
	Dir string
}

func (f FileState) path(key string) (string, error) {
	if key == "" {
		return "", errors.New("consumers: state key is empty")
	}
	// PathEscape leaves no separator, and "." and ".." are refused, so a
	// key cannot leave Dir.
	name := url.PathEscape(key)
	if name == "." || name == ".." {
		return "", fmt.Errorf("consumers: state key %q is not a usable name", key)
	}
	return filepath.Join(f.Dir, name), nil
}

// Load implements StateStore.
func (f FileState) Load(_ context.Context, key string) ([]byte, error) {
	p, err := f.path(key)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("consumers: load state %q: %w", key, err)
	}
	return data, nil
}

// Save implements StateStore: temp file, fsync, rename over the old file,
// fsync of the directory so the rename itself survives a power loss.
func (f FileState) Save(_ context.Context, key string, value []byte) error {
	p, err := f.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return fmt.Errorf("consumers: save state %q: %w", key, err)
	}
	tmp, err := os.CreateTemp(f.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("consumers: save state %q: %w", key, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(value); err != nil {
		tmp.Close()
		return fmt.Errorf("consumers: save state %q: write: %w", key, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("consumers: save state %q: sync: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("consumers: save state %q: close: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("consumers: save state %q: rename: %w", key, err)
	}
	dir, err := os.Open(f.Dir)
	if err != nil {
		return fmt.Errorf("consumers: save state %q: open dir: %w", key, err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("consumers: save state %q: sync dir: %w", key, err)
	}
	return nil
}

// ConsumerStateTopic is the suffix of the compacted topic that holds the
// consumers' state in Kafka mode.
const ConsumerStateTopic = "consumer-state.v1"

// stateFormatV1 is the first byte of every TopicState record value.
const stateFormatV1 = 0x01

// TopicState keeps every plug-in's state in one compacted Kafka topic with a
// single partition, keyed "<plugin>/<key>", so consumers hold no local
// state and can move between machines. Load reads the topic to its end:
// fine for the small, rarely read state it is meant for.
//
// The topic is read once, on the first Load, into memory; later loads are
// served from there and saves update it. A plug-in's keys are written by
// the one process that runs it (webhooks names its keys per instance), so
// nothing is missed by not re-reading.
type TopicState struct {
	cfg    kafkabus.Config
	topic  string
	writer *kafka.Writer

	mu     sync.Mutex
	values map[string][]byte // nil until the topic was read
}

// NewTopicState creates the compacted topic if needed.
func NewTopicState(ctx context.Context, cfg kafkabus.Config, topic string) (*TopicState, error) {
	err := kafkabus.EnsureTopic(ctx, cfg, kafkabus.TopicSpec{
		Name:       topic,
		Partitions: 1,
		// Compact promptly: plug-ins such as webhooks save often.
		Configs: map[string]string{"cleanup.policy": "compact", "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.1"},
	})
	if err != nil {
		return nil, fmt.Errorf("consumers: state topic: %w", err)
	}
	tr, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        topic,
		Balancer:     &kafka.LeastBytes{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		MaxAttempts:  5,
		Transport:    tr,
	}
	return &TopicState{cfg: cfg, topic: topic, writer: w}, nil
}

// For returns the StateStore of one plug-in.
func (s *TopicState) For(plugin string) StateStore { return topicStore{s: s, plugin: plugin} }

// Close releases the writer's connections.
func (s *TopicState) Close() error { return s.writer.Close() }

type topicStore struct {
	s      *TopicState
	plugin string
}

func (t topicStore) key(k string) (string, error) {
	if k == "" {
		return "", errors.New("consumers: state key is empty")
	}
	return t.plugin + "/" + k, nil
}

// Save implements StateStore; it returns after every in-sync replica has
// the record.
func (t topicStore) Save(ctx context.Context, key string, value []byte) error {
	k, err := t.key(key)
	if err != nil {
		return err
	}
	// The record value is a format byte and the value, so an empty value
	// is not confused with a tombstone (a null value, which compaction
	// deletes).
	rec := append([]byte{stateFormatV1}, value...)
	if err := t.s.writer.WriteMessages(ctx, kafka.Message{Key: []byte(k), Value: rec}); err != nil {
		return fmt.Errorf("consumers: save state %q to %s: %w", k, t.s.topic, err)
	}
	t.s.mu.Lock()
	if t.s.values != nil {
		t.s.values[k] = append([]byte{}, value...)
	}
	t.s.mu.Unlock()
	return nil
}

// Load implements StateStore.
func (t topicStore) Load(ctx context.Context, key string) ([]byte, error) {
	k, err := t.key(key)
	if err != nil {
		return nil, err
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	if t.s.values == nil {
		values, err := t.s.readAll(ctx)
		if err != nil {
			return nil, fmt.Errorf("consumers: load state %q: %w", k, err)
		}
		t.s.values = values
	}
	return t.s.values[k], nil
}

// readAll reads the latest value of every key of the state topic.
func (s *TopicState) readAll(ctx context.Context) (map[string][]byte, error) {
	values := map[string][]byte{}
	client, err := s.cfg.Client()
	if err != nil {
		return nil, err
	}
	defer func() {
		if tr, ok := client.Transport.(*kafka.Transport); ok {
			tr.CloseIdleConnections()
		}
	}()
	firsts, err := listOffsets(ctx, client, s.topic, []int{0}, kafka.FirstOffset)
	if err != nil {
		return nil, err
	}
	ends, err := listOffsets(ctx, client, s.topic, []int{0}, kafka.LastOffset)
	if err != nil {
		return nil, err
	}
	first, end := firsts[0], ends[0]
	if end <= first {
		return values, nil
	}
	dialer, err := s.cfg.Dialer()
	if err != nil {
		return nil, err
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   s.cfg.Brokers,
		Topic:     s.topic,
		Partition: 0,
		Dialer:    dialer,
		MinBytes:  1,
		MaxBytes:  10 << 20,
		MaxWait:   100 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return nil, err
	}
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.topic, err)
		}
		switch {
		case len(m.Value) == 0: // a tombstone: deleted
			delete(values, string(m.Key))
		case m.Value[0] == stateFormatV1:
			values[string(m.Key)] = append([]byte{}, m.Value[1:]...)
		default:
			return nil, fmt.Errorf("record %q at offset %d has unknown format %#x", m.Key, m.Offset, m.Value[0])
		}
		if m.Offset >= end-1 {
			return values, nil
		}
	}
}
