package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/callstream/callstream/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	metadataAPI "github.com/segmentio/kafka-go/protocol/metadata"
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	Config `yaml:"kafka"`

	BatchTimeout time.Duration `yaml:"batch_timeout" doc:"Longest wait for a partial batch to fill before it is sent; kafka-go's own default of 1s is a latency trap."`
	BatchSize    int           `yaml:"batch_size" doc:"Most messages in one produce batch per partition."`
	BatchBytes   int64         `yaml:"batch_bytes" doc:"Most bytes in one produce batch per partition."`
	Compression  string        `yaml:"compression" doc:"Batch compression: none, gzip, snappy, lz4 or zstd."`
	MaxAttempts  int           `yaml:"max_attempts" doc:"Attempts to deliver a batch before Publish fails; only writes the broker refused before appending are retried (see write)."`
	WriteTimeout time.Duration `yaml:"write_timeout" doc:"Timeout of one produce request, acknowledgement included."`

	// AllowAutoTopicCreation lets the broker create a missing topic on first
	// publish, with its default partition count. Off by default: topics are
	// made on purpose with EnsureTopic or SubscribeInitialize.
	AllowAutoTopicCreation bool `yaml:"allow_auto_topic_creation" doc:"Let the broker create a missing topic on first publish."`

	// Marshaler turns messages into records; nil means DefaultMarshaler.
	Marshaler Marshaler `yaml:"-"`
	// Registerer receives the publisher's metrics; nil keeps them private.
	Registerer prometheus.Registerer `yaml:"-"`
}

// DefaultPublisherConfig returns the settings tuned for low latency with
// good batching under load.
func DefaultPublisherConfig() PublisherConfig {
	return PublisherConfig{
		Config:       DefaultConfig(),
		BatchTimeout: 5 * time.Millisecond,
		BatchSize:    1000,
		BatchBytes:   1 << 20,
		Compression:  "none",
		MaxAttempts:  10,
		WriteTimeout: 10 * time.Second,
	}
}

func (c *PublisherConfig) setDefaults() {
	d := DefaultPublisherConfig()
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = d.BatchTimeout
	}
	if c.BatchSize <= 0 {
		c.BatchSize = d.BatchSize
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = d.BatchBytes
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.Marshaler == nil {
		c.Marshaler = DefaultMarshaler{}
	}
}

// compressionCodec maps a configured name to kafka-go's codec.
func compressionCodec(name string) (kafka.Compression, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	default:
		return 0, fmt.Errorf("kafkabus: unknown compression %q (want none, gzip, snappy, lz4 or zstd)", name)
	}
}

var _ message.Publisher = (*Publisher)(nil)

// Publisher is a watermill message.Publisher on a kafka-go Writer. It is safe
// for concurrent use; concurrent Publish calls share produce batches.
type Publisher struct {
	cfg     PublisherConfig
	writer  *kafka.Writer
	logger  watermill.LoggerAdapter
	metrics *metrics

	mu     sync.RWMutex // guards closed against Publish in flight
	closed bool
}

// NewPublisher returns a Publisher. It does not connect until the first
// Publish.
func NewPublisher(cfg PublisherConfig, logger watermill.LoggerAdapter) (*Publisher, error) {
	cfg.setDefaults()
	codec, err := compressionCodec(cfg.Compression)
	if err != nil {
		return nil, err
	}
	tr, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	w := &kafka.Writer{
		Addr: kafka.TCP(cfg.Brokers...),
		// Murmur2 is what the Java client and librdkafka use for keyed
		// records, so every client puts a call_key in the same partition.
		Balancer:               &kafka.Murmur2Balancer{},
		MaxAttempts:            1, // Publisher.write retries what is safe to retry
		BatchSize:              cfg.BatchSize,
		BatchBytes:             cfg.BatchBytes,
		BatchTimeout:           cfg.BatchTimeout,
		WriteTimeout:           cfg.WriteTimeout,
		ReadTimeout:            cfg.WriteTimeout,
		RequiredAcks:           kafka.RequireAll,
		Compression:            codec,
		Transport:              tr,
		AllowAutoTopicCreation: cfg.AllowAutoTopicCreation,
	}
	return &Publisher{cfg: cfg, writer: w, logger: logger, metrics: newMetrics(cfg.Registerer)}, nil
}

// Publish writes msgs to topic as one batch and returns after the broker
// acknowledged all of them to every in-sync replica. Publish retries only
// writes the broker refused before appending them, so a success means each
// message was written once; on error some may have been written, and a
// retry by the caller can duplicate those.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if topic == "" {
		return errors.New("kafkabus: publish: empty topic")
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return fmt.Errorf("kafkabus: publish to %s: publisher closed", topic)
	}
	if len(msgs) == 0 {
		return nil
	}
	records := make([]kafka.Message, len(msgs))
	// Records without a schemas.FencedAtMetadata are stamped with the
	// moment of Publish: never later than that, so that a topic with
	// message.timestamp.before.max.ms refuses what arrives that much later.
	now := time.Now()
	for i, msg := range msgs {
		rec, err := p.cfg.Marshaler.Marshal(topic, msg)
		if err != nil {
			p.metrics.errors.WithLabelValues("marshal").Inc()
			return fmt.Errorf("kafkabus: marshal message %d for topic %s: %w", i, topic, err)
		}
		rec.Topic = topic
		if rec.Time.IsZero() {
			rec.Time = now
		}
		records[i] = rec
	}
	ctx := context.Background()
	if err := p.write(ctx, topic, records); err != nil {
		p.metrics.errors.WithLabelValues("publish").Inc()
		if tooLarge(err) {
			return fmt.Errorf("kafkabus: publish %d messages to %s: %w (publisher batch_bytes %d; the topic's max.message.bytes may be lower): %w",
				len(msgs), topic, schemas.ErrTooLarge, p.cfg.BatchBytes, err)
		}
		if anyWriteError(err, func(e error) bool { return errors.Is(e, kafka.InvalidTimestamp) }) {
			return fmt.Errorf("kafkabus: publish %d messages to %s: %w: %w", len(msgs), topic, ErrLate, err)
		}
		return fmt.Errorf("kafkabus: publish %d messages to %s: %w", len(msgs), topic, err)
	}
	p.metrics.published.WithLabelValues(topic).Add(float64(len(msgs)))
	return nil
}

// ErrLate is the error of a Publish whose records reached the broker more
// than the topic's message.timestamp.before.max.ms after their timestamp
// (schemas.FencedAtMetadata, else the moment of Publish): the broker
// refused those records; others of the call, in other partitions, may have
// been written.
var ErrLate = errors.New("the broker refused records that arrived too late (the topic's message.timestamp.before.max.ms; a producer paused past its fence)")

// tooLarge reports whether err says a message is too large for the bus:
// over the writer's BatchBytes (refused before sending) or over the topic's
// max.message.bytes (refused by the broker). Retrying either cannot help,
// so callers see schemas.ErrTooLarge.
func tooLarge(err error) bool {
	return anyWriteError(err, func(e error) bool {
		var mtl kafka.MessageTooLargeError
		return errors.As(e, &mtl) || errors.Is(e, kafka.MessageSizeTooLarge)
	})
}

// anyWriteError reports whether err, or one of the per-message errors of a
// kafka.WriteErrors in it, satisfies is. kafka.WriteErrors does not unwrap
// to its elements, hence the loop.
func anyWriteError(err error, is func(error) bool) bool {
	if is(err) {
		return true
	}
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if e != nil && is(e) {
				return true
			}
		}
	}
	return false
}

// refreshTopic makes the writer see a topic that was created after its
// metadata cache was filled (kafka-go caches metadata for seconds and fails
// fast on a topic it does not know). It returns whether the topic exists.
func (p *Publisher) refreshTopic(ctx context.Context, topic string) bool {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.WriteTimeout)
	defer cancel()
	if _, err := PartitionIDs(ctx, p.cfg.Config, topic); err != nil {
		return false
	}
	// A metadata request that allows auto-creation bypasses the transport's
	// cache and refreshes it; the topic exists, so nothing is created.
	_, err := p.writer.Transport.RoundTrip(ctx, p.writer.Addr, &metadataAPI.Request{
		TopicNames:             []string{topic},
		AllowAutoTopicCreation: true,
	})
	return err == nil
}

// Close flushes pending batches, waits for in-flight Publish calls and
// closes the connections. It is safe to call more than once.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.writer.Close()
	if tr, ok := p.writer.Transport.(*kafka.Transport); ok {
		tr.CloseIdleConnections()
	}
	if err != nil {
		p.metrics.errors.WithLabelValues("close").Inc()
		return fmt.Errorf("kafkabus: close publisher: %w", err)
	}
	return nil
}
