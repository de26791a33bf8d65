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
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// Initial offsets accepted in SubscriberConfig.InitialOffset.
const (
	OffsetFirst = "first"
	OffsetLast  = "last"
)

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	Config `yaml:"kafka"`

	ConsumerGroup string `yaml:"consumer_group" doc:"Consumer group id; empty reads every partition without a group, from initial_offset, committing nothing."`
	InitialOffset string `yaml:"initial_offset" doc:"Where to start without a committed offset: first or last."`
	MaxInFlight   int    `yaml:"max_in_flight" doc:"Unacked messages outstanding per subscription; 1 keeps partition order, more pipelines and commits only the acked prefix."`

	MinBytes        int           `yaml:"min_bytes" doc:"Least bytes a fetch waits for (up to max_wait); 1 favours latency."`
	MaxBytes        int           `yaml:"max_bytes" doc:"Most bytes one fetch returns."`
	MaxWait         time.Duration `yaml:"max_wait" doc:"Longest time the broker holds a fetch waiting for min_bytes."`
	CommitInterval  time.Duration `yaml:"commit_interval" doc:"0 commits acked offsets right away (batched while a commit is in flight); more commits them on this period and on close."`
	NackResendSleep time.Duration `yaml:"nack_resend_sleep" doc:"Pause before a nacked message is delivered again."`

	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" doc:"Group heartbeat period; members notice a rebalance within it."`
	SessionTimeout    time.Duration `yaml:"session_timeout" doc:"A member silent this long is dropped from the group."`
	RebalanceTimeout  time.Duration `yaml:"rebalance_timeout" doc:"How long the coordinator waits for members to rejoin during a rebalance."`

	TopicPartitions        int               `yaml:"topic_partitions" doc:"Partitions of topics made by SubscribeInitialize; 0 means the broker default."`
	TopicReplicationFactor int               `yaml:"topic_replication_factor" doc:"Replication factor of topics made by SubscribeInitialize; 0 means the broker default."`
	TopicConfigs           map[string]string `yaml:"topic_configs" doc:"Topic settings for topics made by SubscribeInitialize."`

	// Unmarshaler turns records into messages; nil means DefaultMarshaler.
	Unmarshaler Unmarshaler `yaml:"-"`
	// Registerer receives the subscriber's metrics; nil keeps them private.
	Registerer prometheus.Registerer `yaml:"-"`
}

// DefaultSubscriberConfig returns settings tuned for low latency.
func DefaultSubscriberConfig() SubscriberConfig {
	return SubscriberConfig{
		Config:            DefaultConfig(),
		InitialOffset:     OffsetFirst,
		MaxInFlight:       1,
		MinBytes:          1,
		MaxBytes:          10 << 20,
		MaxWait:           250 * time.Millisecond,
		NackResendSleep:   100 * time.Millisecond,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
	}
}

func (c *SubscriberConfig) setDefaults() error {
	d := DefaultSubscriberConfig()
	switch strings.ToLower(strings.TrimSpace(c.InitialOffset)) {
	case "", OffsetFirst:
		c.InitialOffset = OffsetFirst
	case OffsetLast:
		c.InitialOffset = OffsetLast
	default:
		return fmt.Errorf("kafkabus: unknown initial_offset %q (want first or last)", c.InitialOffset)
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.MinBytes <= 0 {
		c.MinBytes = d.MinBytes
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.MaxWait <= 0 {
		c.MaxWait = d.MaxWait
	}
	if c.CommitInterval < 0 {
		c.CommitInterval = 0
	}
	if c.NackResendSleep < 0 {
		c.NackResendSleep = 0
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = d.SessionTimeout
	}
	if c.RebalanceTimeout <= 0 {
		c.RebalanceTimeout = d.RebalanceTimeout
	}
	if c.Unmarshaler == nil {
		c.Unmarshaler = DefaultMarshaler{}
	}
	return nil
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// Subscriber is a watermill message.Subscriber on kafka-go Readers. Each
// Subscribe call gets its own Reader (one group member, or one reader per
// partition without a group).
type Subscriber struct {
	cfg     SubscriberConfig
	dialer  *kafka.Dialer
	logger  watermill.LoggerAdapter
	metrics *metrics

	mu     sync.Mutex
	closed bool
	subs   map[*subscription]struct{}
}

// NewSubscriber returns a Subscriber. It does not connect until Subscribe.
func NewSubscriber(cfg SubscriberConfig, logger watermill.LoggerAdapter) (*Subscriber, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	dialer, err := cfg.Dialer()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	return &Subscriber{
		cfg:     cfg,
		dialer:  dialer,
		logger:  logger,
		metrics: newMetrics(cfg.Registerer),
		subs:    map[*subscription]struct{}{},
	}, nil
}

// SubscribeInitialize creates topic with the configured partitions,
// replication factor and settings, unless it exists.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return EnsureTopic(ctx, s.cfg.Config, TopicSpec{
		Name:              topic,
		Partitions:        s.cfg.TopicPartitions,
		ReplicationFactor: s.cfg.TopicReplicationFactor,
		Configs:           s.cfg.TopicConfigs,
	})
}

// Subscribe starts consuming topic. The channel closes when ctx is done or
// the Subscriber is closed; messages delivered and not yet acked by then are
// not committed, and are delivered again to the next reader.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	sub, err := s.subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	sub.loops.Add(1)
	go sub.run()
	return sub.out, nil
}

// subscribe registers a subscription of topic that stops with ctx or
// Close; the caller starts its fetch loop.
func (s *Subscriber) subscribe(ctx context.Context, topic string) (*subscription, error) {
	if topic == "" {
		return nil, errors.New("kafkabus: subscribe: empty topic")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("kafkabus: subscribe to %s: subscriber closed", topic)
	}
	src, err := s.newSource(ctx, topic)
	if err != nil {
		return nil, err
	}
	sub := newSubscription(s, ctx, topic, src)
	s.subs[sub] = struct{}{}
	go func() {
		select {
		case <-ctx.Done():
		case <-sub.ctx.Done():
		}
		if err := sub.close(); err != nil {
			s.logger.Error("kafkabus: closing subscription", err, sub.labels)
		}
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}()
	return sub, nil
}

func (s *Subscriber) startOffset() int64 {
	if s.cfg.InitialOffset == OffsetLast {
		return kafka.LastOffset
	}
	return kafka.FirstOffset
}

func (s *Subscriber) readerConfig(topic string) kafka.ReaderConfig {
	c := s.cfg
	return kafka.ReaderConfig{
		Brokers:           c.Brokers,
		Topic:             topic,
		Dialer:            s.dialer,
		MinBytes:          c.MinBytes,
		MaxBytes:          c.MaxBytes,
		MaxWait:           c.MaxWait,
		QueueCapacity:     1000,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
		StartOffset:       s.startOffset(),
		HeartbeatInterval: c.HeartbeatInterval,
		SessionTimeout:    c.SessionTimeout,
		RebalanceTimeout:  c.RebalanceTimeout,
		JoinGroupBackoff:  500 * time.Millisecond,
		// Commits are synchronous; the subscription's committer applies
		// CommitInterval itself, so it knows when a commit landed.
		CommitInterval:        0,
		WatchPartitionChanges: true,
		ErrorLogger: kafka.LoggerFunc(func(format string, args ...any) {
			s.logger.Error("kafka-go reader", fmt.Errorf(format, args...), watermill.LogFields{"topic": topic})
		}),
	}
}

func (s *Subscriber) newSource(ctx context.Context, topic string) (source, error) {
	if s.cfg.ConsumerGroup != "" {
		rc := s.readerConfig(topic)
		rc.GroupID = s.cfg.ConsumerGroup
		return groupSource{kafka.NewReader(rc)}, nil
	}
	ids, err := PartitionIDs(ctx, s.cfg.Config, topic)
	if err != nil {
		return nil, fmt.Errorf("kafkabus: subscribe to %s without a group: %w", topic, err)
	}
	start := make(map[int]int64, len(ids))
	for _, id := range ids {
		start[id] = kafka.FirstOffset
	}
	if s.cfg.InitialOffset == OffsetLast {
		// Resolve "last" now, so the subscription starts at the end as of
		// Subscribe rather than whenever each reader first connects.
		if start, err = EndOffsets(ctx, s.cfg.Config, topic); err != nil {
			return nil, fmt.Errorf("kafkabus: subscribe to %s without a group: %w", topic, err)
		}
	}
	return newPartitionSource(s, topic, ids, start), nil
}

// Close stops every subscription, commits what was acked and leaves the
// consumer groups. It returns after every subscription channel is closed.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := make([]*subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(subs))
	for i, sub := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sub.close()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Subscribers returns a function that builds a Subscriber in a given
// consumer group with a given in-flight limit, from base for everything
// else: the shape of the consumer runtime's RuntimeDeps.Subscribe.
func Subscribers(base SubscriberConfig, logger watermill.LoggerAdapter) func(group string, maxInFlight int) (message.Subscriber, error) {
	return func(group string, maxInFlight int) (message.Subscriber, error) {
		sc := base
		sc.ConsumerGroup, sc.MaxInFlight = group, maxInFlight
		s, err := NewSubscriber(sc, logger)
		if err != nil {
			return nil, fmt.Errorf("kafkabus: subscriber in group %s: %w", group, err)
		}
		return s, nil
	}
}
