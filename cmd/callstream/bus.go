package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/sqlitebus"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// bus is what the commands need of the message bus, Kafka or the embedded
// log: kafkaBus and localBus.
type bus interface {
	publisher() message.Publisher
	subscribers() func(group string, maxInFlight int) (message.Subscriber, error)
	lagger() consumers.Lagger
	eventLog(topic string) producer.EventLog
	producerState(ctx context.Context) (producer.StateStore, error)
	ensure(ctx context.Context, partitions int, topics ...string) error
	close() error
}

// openBus opens Kafka when brokers are configured (waiting up to startWait
// for them), else the embedded bus of the state directory: for the
// one-shot commands (dlq replay, backfill), which work in both modes.
func openBus(ctx context.Context, cfg *Config, what string, logger *slog.Logger, reg prometheus.Registerer) (bus, error) {
	if len(cfg.Kafka.Brokers) == 0 {
		return openLocal(ctx, cfg, logger, reg)
	}
	k, err := openKafka(cfg, what, logger, reg)
	if err != nil {
		return nil, err
	}
	if err := k.waitFor(ctx, startWait); err != nil {
		_ = k.close()
		return nil, err
	}
	return k, nil
}

// kafkaBus is Kafka as the commands use it: one publisher, group
// subscribers for the consumer runtime and the DLQ replay, the offset
// queries, and the compacted topics that hold state.
type kafkaBus struct {
	cfg    kafkabus.Config
	prefix string
	logger *slog.Logger
	reg    prometheus.Registerer
	pub    *kafkabus.Publisher
	kvs    []*kafkabus.KV
	// waiting holds the last reason the brokers did not answer while the
	// process waits for them; nil once they did.
	waiting atomic.Pointer[error]
}

// errNoBrokers is the usage error of a command that needs Kafka.
func errNoBrokers(what string) error {
	return fmt.Errorf("%w: this command %s Kafka: set KAFKA_BROKERS (or kafka.brokers in the config file); `callstream run` uses the embedded bus instead", errUsage, what)
}

// openKafka validates the Kafka settings and builds the publisher. what
// says what the command does with Kafka, for the error when no broker is set.
func openKafka(cfg *Config, what string, logger *slog.Logger, reg prometheus.Registerer) (*kafkaBus, error) {
	if len(cfg.Kafka.Brokers) == 0 {
		return nil, errNoBrokers(what)
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return nil, err
	}
	pcfg := kafkabus.DefaultPublisherConfig()
	pcfg.Config, pcfg.Registerer = cfg.Kafka, reg
	pub, err := kafkabus.NewPublisher(pcfg, consumers.WatermillLogger(logger))
	if err != nil {
		return nil, err
	}
	k := &kafkaBus{cfg: cfg.Kafka, prefix: cfg.TopicPrefix, logger: logger, reg: reg, pub: pub}
	connecting := errors.New("not connected yet")
	k.waiting.Store(&connecting)
	return k, nil
}

func (k *kafkaBus) publisher() message.Publisher { return k.pub }

// subscribers builds subscribers in consumer groups, reading a group's
// topics from the beginning when it has no committed offset.
func (k *kafkaBus) subscribers() func(group string, maxInFlight int) (message.Subscriber, error) {
	sc := kafkabus.DefaultSubscriberConfig()
	sc.Config, sc.Registerer = k.cfg, k.reg
	sc.InitialOffset = kafkabus.OffsetFirst
	return kafkabus.Subscribers(sc, consumers.WatermillLogger(k.logger))
}

func (k *kafkaBus) lagger() consumers.Lagger { return kafkabus.NewAdmin(k.cfg) }

// eventLog reads a topic back by offset, for the producer's restore.
func (k *kafkaBus) eventLog(topic string) producer.EventLog {
	return kafkabus.NewTopicLog(k.cfg, topic)
}

// ensure creates the topics when missing, with partitions partitions (0:
// the broker's default).
func (k *kafkaBus) ensure(ctx context.Context, partitions int, topics ...string) error {
	for _, t := range topics {
		if err := kafkabus.EnsureTopic(ctx, k.cfg, kafkabus.TopicSpec{Name: t, Partitions: partitions}); err != nil {
			return err
		}
	}
	return nil
}

// kv opens the compacted topic named by suffix as a key-value store,
// closed with the bus.
func (k *kafkaBus) kv(ctx context.Context, suffix string) (*kafkabus.KV, error) {
	kv, err := kafkabus.NewKV(ctx, k.cfg, schemas.TopicName(k.prefix, suffix))
	if err != nil {
		return nil, err
	}
	k.kvs = append(k.kvs, kv)
	return kv, nil
}

// producerState is the producer's checkpoint store.
func (k *kafkaBus) producerState(ctx context.Context) (producer.StateStore, error) {
	kv, err := k.kv(ctx, schemas.ProducerStateTopic)
	if err != nil {
		return nil, err
	}
	return producer.NewKVStore(kv), nil
}

// consumerState is every plug-in's state store.
func (k *kafkaBus) consumerState(ctx context.Context) (func(plugin string) consumers.StateStore, error) {
	kv, err := k.kv(ctx, consumers.ConsumerStateTopic)
	if err != nil {
		return nil, err
	}
	return consumers.NewSharedState(kv).For, nil
}

// ready reports whether the brokers answer for topic; while the process
// still waits for them, it reports why.
func (k *kafkaBus) ready(topic string) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := k.waiting.Load(); err != nil {
			return fmt.Errorf("waiting for the brokers: %w", *err)
		}
		_, err := kafkabus.PartitionIDs(ctx, k.cfg, topic)
		return err
	}
}

// startWait bounds the wait for the brokers of the one-shot commands
// (backfill, dlq replay); produce and consume wait for as long as it takes.
const startWait = 2 * time.Minute

// wait blocks until the brokers answer, logging what it waits for every
// few seconds, with the step that fails (connection refused, TLS, SASL).
func (k *kafkaBus) wait(ctx context.Context) error { return k.waitFor(ctx, 0) }

// waitFor is wait for at most limit (0: no limit).
func (k *kafkaBus) waitFor(ctx context.Context, limit time.Duration) error {
	bo := backoff.NewExponentialBackOff(backoff.WithInitialInterval(time.Second),
		backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(limit))
	start := time.Now()
	for {
		err := kafkabus.Probe(ctx, k.cfg)
		if err == nil {
			if k.waiting.Swap(nil) != nil {
				k.logger.Info("Kafka answers", "brokers", strings.Join(k.cfg.Brokers, ","), "waited", time.Since(start).Round(time.Second).String())
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		k.waiting.Store(&err)
		next := bo.NextBackOff()
		if next == backoff.Stop {
			return fmt.Errorf("the Kafka brokers did not answer within %s: %w", limit, err)
		}
		k.logger.Warn("waiting for Kafka", "brokers", strings.Join(k.cfg.Brokers, ","), "err", err, "retry_in", next.Round(100*time.Millisecond).String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(next):
		}
	}
}

// close flushes the publisher and releases every connection.
func (k *kafkaBus) close() error {
	errs := []error{k.pub.Close()}
	for _, kv := range k.kvs {
		errs = append(errs, kv.Close())
	}
	return errors.Join(errs...)
}

// localBus is the embedded bus: the durable SQLite log in the state
// directory (pkg/sqlitebus), shared by `callstream run` and the one-shot
// commands pointed at the same state directory (dlq replay, backfill).
type localBus struct {
	bus       *sqlitebus.Bus
	pub       *sqlitebus.Publisher
	statePath func(string) string
}

// producerStateFile is the producer's checkpoint under the state directory.
const producerStateFile = "producer-state.json"

// busFile is the embedded bus's file under the state directory.
const busFile = "bus.db"

// localRetention is how long the embedded bus keeps messages: twice the
// producer's rescan horizon plus an hour.
func localRetention(p producer.Config) time.Duration {
	return 2*(p.SettleLag+p.RescanAges[len(p.RescanAges)-1]) + time.Hour
}

// openLocal opens the embedded bus. Messages are kept at least twice the
// producer's rescan horizon plus an hour: its restore reads the calls topic
// back from there.
func openLocal(ctx context.Context, cfg *Config, logger *slog.Logger, reg prometheus.Registerer) (*localBus, error) {
	b, err := sqlitebus.Open(ctx, sqlitebus.Config{
		Path: cfg.statePath(busFile), Logger: logger.With("component", "bus"), Registerer: reg,
		Retention: localRetention(cfg.Producer),
	})
	if err != nil {
		return nil, fmt.Errorf("embedded bus: %w", err)
	}
	return &localBus{bus: b, pub: b.Publisher(), statePath: cfg.statePath}, nil
}

func (l *localBus) publisher() message.Publisher { return l.pub }

// subscribers builds subscribers in consumer groups, from the first
// message of a new group.
func (l *localBus) subscribers() func(group string, maxInFlight int) (message.Subscriber, error) {
	return func(group string, maxInFlight int) (message.Subscriber, error) {
		return l.bus.Subscriber(sqlitebus.SubscriberConfig{ConsumerGroup: group, MaxInFlight: maxInFlight, InitialOffset: sqlitebus.OffsetFirst})
	}
}

func (l *localBus) lagger() consumers.Lagger { return l.bus }

// eventLog reads a topic back by offset, for the producer's restore.
func (l *localBus) eventLog(topic string) producer.EventLog { return localLog{l.bus, topic} }

// producerState is the producer's checkpoint file.
func (l *localBus) producerState(context.Context) (producer.StateStore, error) {
	return producer.NewFileStore(l.statePath(producerStateFile)), nil
}

// ensure does nothing: the embedded bus makes topics on first use.
func (l *localBus) ensure(context.Context, int, ...string) error { return nil }

func (l *localBus) close() error { return errors.Join(l.pub.Close(), l.bus.Close()) }

// localLog is producer.EventLog (and the backfill's time index) on one
// topic of the embedded bus.
type localLog struct {
	bus   *sqlitebus.Bus
	topic string
}

func (l localLog) EndOffsets(ctx context.Context) (map[int]int64, error) {
	return l.bus.EndOffsets(ctx, l.topic)
}

func (l localLog) ReadFrom(ctx context.Context, from map[int]int64, fn func([]byte) error) error {
	return l.bus.ReadRange(ctx, l.topic, from, fn)
}

func (l localLog) OffsetsAt(ctx context.Context, t time.Time) (map[int]int64, error) {
	return l.bus.OffsetsAt(ctx, l.topic, t)
}
