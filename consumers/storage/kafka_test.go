package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// Helpers that run the storage consumer the way `callstream consume --only
// storage` does: the real consumer runtime (router, batcher, DLQ) on the
// real kafkabus Subscriber, against the broker of testenv.Kafka.

func kafkaConfig(brokers []string) kafkabus.Config {
	c := kafkabus.DefaultConfig()
	c.Brokers = brokers
	return c
}

// createTopics creates the calls topic (with partitions partitions) and the
// DLQ topic of prefix.
func createTopics(t testing.TB, brokers []string, prefix string, partitions int) consumers.Topics {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topics := consumers.NewTopics(prefix)
	kc := kafkaConfig(brokers)
	if err := kafkabus.EnsureTopic(ctx, kc, kafkabus.TopicSpec{Name: topics.Calls, Partitions: partitions}); err != nil {
		t.Fatalf("create %s: %v", topics.Calls, err)
	}
	if err := kafkabus.EnsureTopic(ctx, kc, kafkabus.TopicSpec{Name: topics.DLQ, Partitions: 1}); err != nil {
		t.Fatalf("create %s: %v", topics.DLQ, err)
	}
	return topics
}

// publish writes events to topic as the producer does: keyed by call_key,
// JSON value, CloudEvents headers, acknowledged by all replicas.
func publish(t testing.TB, brokers []string, topic string, evs []schemas.CallEvent) {
	t.Helper()
	msgs := make([]kafka.Message, 0, len(evs))
	for i := range evs {
		msgs = append(msgs, eventRecord(t, &evs[i]))
	}
	publishRecords(t, brokers, topic, msgs)
}

// eventRecord is the record the producer writes for ev.
func eventRecord(t testing.TB, ev *schemas.CallEvent) kafka.Message {
	t.Helper()
	value, err := json.Marshal(ev)
	if err != nil {
		t.Fatalf("marshal event: %v", err)
	}
	return kafka.Message{
		Key:   []byte(ev.CallKey),
		Value: value,
		Headers: []kafka.Header{
			{Key: schemas.HeaderSpecVersion, Value: []byte(schemas.SpecVersion)},
			{Key: schemas.HeaderID, Value: []byte(ev.EventID)},
			{Key: schemas.HeaderType, Value: []byte(ev.Type())},
			{Key: schemas.HeaderSubject, Value: []byte(ev.CallKey)},
			{Key: schemas.HeaderContentType, Value: []byte(schemas.JSONContentType)},
		},
	}
}

// publishRecords writes msgs to topic in order, acknowledged by all
// replicas.
func publishRecords(t testing.TB, brokers []string, topic string, msgs []kafka.Message) {
	t.Helper()
	// A transport of its own: kafka-go's shared default one may hold metadata
	// fetched before this test's topic existed, and then fails the write.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Transport:    tr,
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    1000,
		BatchBytes:   4 << 20,
		BatchTimeout: 5 * time.Millisecond,
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for attempt := 1; len(msgs) > 0; {
		n := min(len(msgs), 5000)
		err := w.WriteMessages(ctx, msgs[:n]...)
		// A topic just created may not be in every broker's metadata yet.
		if errors.Is(err, kafka.UnknownTopicOrPartition) && attempt < 20 {
			attempt++
			time.Sleep(250 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("publish to %s: %v", topic, err)
		}
		msgs = msgs[n:]
	}
}

// runConsumer runs the consumer runtime with only the storage plug-in,
// reading prefix's calls topic in a consumer group of its own, until ctx is
// done; then it shuts down gracefully. tune, if any, adjusts the storage
// configuration.
func runConsumer(ctx context.Context, brokers []string, prefix, dsn string, batch int, logger *slog.Logger, reg prometheus.Registerer, tune ...func(*Config)) error {
	kc := kafkaConfig(brokers)
	ccfg := consumers.DefaultConfig()
	ccfg.GroupPrefix = prefix + "group-"
	ccfg.RetryMaxInterval = time.Second
	scfg := DefaultConfig()
	scfg.DSN = dsn
	scfg.BatchSize, scfg.MaxInFlight, scfg.BatchWait = batch, 2*batch, 50*time.Millisecond
	for _, f := range tune {
		f(&scfg)
	}
	pcfg := kafkabus.DefaultPublisherConfig()
	pcfg.Config = kc
	pub, err := kafkabus.NewPublisher(pcfg, consumers.WatermillLogger(logger))
	if err != nil {
		return err
	}
	defer pub.Close()
	rt, err := consumers.New(ccfg, consumers.RuntimeDeps{
		Logger:     logger,
		Registerer: reg,
		Topics:     consumers.NewTopics(prefix),
		Plugins:    []consumers.Factory{Factory(scfg)},
		Subscribe:  testenv.KafkaSubscribers(kc, reg),
		Publisher:  pub,
	})
	if err != nil {
		return err
	}
	return rt.Run(ctx)
}

// progress returns the number of rows and the sum of their revisions,
// reading the database from outside the consumer; a table not created yet
// counts as empty.
func progress(ctx context.Context, dsn string) (rows, revisions int64, err error) {
	t, err := parseDSN(dsn)
	if err != nil {
		return 0, 0, err
	}
	const q = `SELECT count(*), coalesce(sum(revision), 0) FROM call_logs`
	switch t.dialect {
	case DialectSQLite:
		db, err := sql.Open("sqlite", "file:"+t.path+"?_pragma=busy_timeout(5000)")
		if err != nil {
			return 0, 0, err
		}
		defer db.Close()
		err = db.QueryRowContext(ctx, q).Scan(&rows, &revisions)
		if err != nil && strings.Contains(err.Error(), "no such table") {
			return 0, 0, nil
		}
		return rows, revisions, err
	default:
		conn, err := pgx.Connect(ctx, t.conn)
		if err != nil {
			return 0, 0, err
		}
		defer conn.Close(ctx)
		err = conn.QueryRow(ctx, q).Scan(&rows, &revisions)
		if err != nil && strings.Contains(err.Error(), "does not exist") {
			return 0, 0, nil
		}
		return rows, revisions, err
	}
}

// waitFor polls progress until done says so or the timeout passes.
func waitFor(t testing.TB, dsn string, timeout time.Duration, what string, done func(rows, revisions int64) bool) (int64, int64) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var rows, revs int64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var err error
		rows, revs, err = progress(ctx, dsn)
		cancel()
		if err == nil && done(rows, revs) {
			return rows, revs
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s not reached: %d rows, revision sum %d (last error: %v)", timeout, what, rows, revs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// topicSize returns how many records a topic holds (the sum of its
// partitions' end offsets; the test topics are never truncated).
func topicSize(t testing.TB, brokers []string, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kc := kafkaConfig(brokers)
	parts, err := kafkabus.PartitionIDs(ctx, kc, topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, p := range parts {
		req.Topics[topic] = append(req.Topics[topic], kafka.LastOffsetOf(p))
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	res, err := client.ListOffsets(ctx, req)
	if err != nil {
		t.Fatalf("list offsets of %s: %v", topic, err)
	}
	var n int64
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("offsets of %s/%d: %v", topic, po.Partition, po.Error)
		}
		n += po.LastOffset
	}
	return n
}

// crashEvents returns n events over calls with 1 to 3 revisions, each
// call's revisions in order (as the producer publishes them), and the
// highest revision per call.
func crashEvents(n int) ([]schemas.CallEvent, map[string]schemas.CallEvent) {
	var evs []schemas.CallEvent
	top := map[string]schemas.CallEvent{}
	for c := 0; len(evs) < n; c++ {
		key := fmt.Sprintf("crash-%06d", c)
		for r := 1; r <= 1+c%3 && len(evs) < n; r++ {
			ev := callEvent(key, r)
			evs = append(evs, ev)
			top[key] = ev
		}
	}
	return evs, top
}
