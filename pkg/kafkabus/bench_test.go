package kafkabus_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
)

// Benchmark shape, shared by kafkabus and the plain kafka-go ceiling.
const (
	benchPartitions = 4
	benchPayload    = 1024
	benchChunk      = 500 // messages per Publish / WriteMessages call
	benchPublishers = 4   // goroutines publishing chunks
	benchSingles    = 256 // goroutines publishing one message per call
	benchRounds     = 3
)

// TestBenchmarkThroughput prints publish and end-to-end throughput of
// kafkabus and of plain kafka-go Writer/Reader with the same settings, for
// 1 KiB messages. It only runs with CALLSTREAM_BENCH=1; it asserts no speed,
// only that every message arrived.
//
//	CALLSTREAM_BENCH=1 KAFKA_BROKERS=127.0.0.1:9092 go test ./pkg/kafkabus -run TestBenchmarkThroughput -count=1 -v -timeout 30m
//
// End-to-end means: publishers and a group consumer run at once, the clock
// stops when every message was consumed, acked and the consumer closed. The
// kafka-go consumer is the textbook loop, FetchMessage then CommitMessages
// for every message; with a commit interval that costs it a channel hop per
// message, which kafkabus avoids by handing only the acked prefix to its
// committer, so kafkabus can come out ahead of this "ceiling".
//
// CALLSTREAM_BENCH_MESSAGES sets the message count (default 200000);
// CALLSTREAM_BENCH_CASES runs only the cases whose name contains it.
func TestBenchmarkThroughput(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("benchmark: set CALLSTREAM_BENCH=1")
	}
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("CALLSTREAM_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	b := &bench{t: t, n: n, payload: make([]byte, benchPayload)}
	for i := range b.payload {
		b.payload[i] = byte('a' + i%26)
	}
	b.brokers = testenv.Kafka(t)

	type row struct {
		name       string
		bus, plain float64
	}
	var rows []row
	add := func(name string, bus, plain float64) {
		rows = append(rows, row{name, bus, plain})
		t.Logf("%-44s kafkabus %9.0f msg/s %7.1f MB/s | kafka-go %9.0f msg/s %7.1f MB/s | ratio %5.1f%%",
			name, bus, bus*benchPayload/1e6, plain, plain*benchPayload/1e6, 100*bus/plain)
	}

	// The machine is shared: runs alternate between kafkabus and kafka-go
	// and each figure is the best of benchRounds, so both see similar load.
	best := func(f func() float64) func(*float64) {
		return func(dst *float64) { *dst = max(*dst, f()) }
	}
	cases := []struct {
		name       string
		bus, plain func() float64
	}{
		{fmt.Sprintf("publish, %d callers x %d-message batches", benchPublishers, benchChunk),
			func() float64 { return b.busPublish(b.topic("bus-pub"), benchPublishers, benchChunk) },
			func() float64 { return b.plainPublish(b.topic("plain-pub"), benchPublishers, benchChunk) }},
		{fmt.Sprintf("publish, %d callers x 1 message", benchSingles),
			func() float64 { return b.busPublish(b.topic("bus-pub1"), benchSingles, 1) },
			func() float64 { return b.plainPublish(b.topic("plain-pub1"), benchSingles, 1) }},
		{"end-to-end, group, MaxInFlight=1, commit 1s",
			func() float64 { return b.busEndToEnd(b.topic("bus-e2e-i"), 1, time.Second) },
			func() float64 { return b.plainEndToEnd(b.topic("plain-e2e-i"), time.Second) }},
		// Not like for like: kafka-go commits each message synchronously,
		// kafkabus batches whatever was acked while a commit is in flight.
		{"end-to-end, group, MaxInFlight=1, commit asap (vs kafka-go sync commit per message)",
			func() float64 { return b.busEndToEnd(b.topic("bus-e2e"), 1, 0) },
			func() float64 { return b.plainEndToEnd(b.topic("plain-e2e"), 0) }},
		{"end-to-end, group, MaxInFlight=256, commit 1s",
			func() float64 { return b.busEndToEnd(b.topic("bus-e2e-p"), 256, time.Second) },
			func() float64 { return b.plainEndToEnd(b.topic("plain-e2e-p"), time.Second) }},
	}
	only := os.Getenv("CALLSTREAM_BENCH_CASES") // substring filter on case names
	for _, c := range cases {
		if only != "" && !strings.Contains(c.name, only) {
			continue
		}
		var bus, plain float64
		for r := 0; r < benchRounds; r++ {
			if r%2 == 0 {
				best(c.bus)(&bus)
				best(c.plain)(&plain)
			} else {
				best(c.plain)(&plain)
				best(c.bus)(&bus)
			}
		}
		add(c.name, bus, plain)
	}

	fmt.Printf("\nkafkabus benchmark: %d messages of %d B, %d partitions, RequireAll, BatchTimeout 5ms\n", n, benchPayload, benchPartitions)
	for _, r := range rows {
		fmt.Printf("  %-48s kafkabus %8.0f msg/s (%6.1f MB/s)  kafka-go %8.0f msg/s (%6.1f MB/s)  %5.1f%%\n",
			r.name, r.bus, r.bus*benchPayload/1e6, r.plain, r.plain*benchPayload/1e6, 100*r.bus/r.plain)
	}
	rr := b.readRange(b.topic("readrange"))
	fmt.Printf("  ReadRange (200 B records, restore path):          %8.0f records/s\n", rr)
}

type bench struct {
	t       *testing.T
	n       int
	brokers []string
	payload []byte
}

func (b *bench) cfg() kafkabus.Config {
	c := kafkabus.DefaultConfig()
	c.Brokers = b.brokers
	return c
}

func (b *bench) topic(name string) string {
	b.t.Helper()
	topic := testenv.Topic(b.t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkabus.EnsureTopic(ctx, b.cfg(), kafkabus.TopicSpec{Name: topic, Partitions: benchPartitions, ReplicationFactor: 1}); err != nil {
		b.t.Fatal(err)
	}
	deleteTopicsAfter(b.t, b.brokers, topic)
	return topic
}

// chunks splits message indexes [0, n) into calls of size per call.
func (b *bench) run(callers, per int, call func(from, to int) error) time.Duration {
	b.t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	start := time.Now()
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				from := int(next.Add(int64(per))) - per
				if from >= b.n {
					return
				}
				if err := call(from, min(from+per, b.n)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		b.t.Fatal(err)
	}
	return elapsed
}

func (b *bench) busMessages() []*message.Message {
	msgs := make([]*message.Message, b.n)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), b.payload)
	}
	return msgs
}

// plainIDs are the message ids of the kafka-go runs. Like kafkabus (which
// marshals inside Publish), the plain runs build each kafka.Message inside
// the timed call, with the same bytes on the wire: payload and UUID header.
func (b *bench) plainIDs() []string {
	ids := make([]string, b.n)
	for i := range ids {
		ids[i] = watermill.NewUUID()
	}
	return ids
}

func (b *bench) plainWrite(w *kafka.Writer, topic string, ids []string) error {
	msgs := make([]kafka.Message, len(ids))
	for i, id := range ids {
		msgs[i] = kafka.Message{Topic: topic, Value: b.payload, Headers: []kafka.Header{{Key: kafkabus.UUIDHeader, Value: []byte(id)}}}
	}
	return w.WriteMessages(context.Background(), msgs...)
}

func (b *bench) newPublisher() *kafkabus.Publisher {
	pc := kafkabus.DefaultPublisherConfig()
	pc.Config = b.cfg()
	p, err := kafkabus.NewPublisher(pc, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return p
}

// newWriter mirrors what NewPublisher builds.
func (b *bench) newWriter() *kafka.Writer {
	d := kafkabus.DefaultPublisherConfig()
	return &kafka.Writer{
		Addr:         kafka.TCP(b.brokers...),
		Balancer:     &kafka.Murmur2Balancer{},
		BatchSize:    d.BatchSize,
		BatchBytes:   d.BatchBytes,
		BatchTimeout: d.BatchTimeout,
		RequiredAcks: kafka.RequireAll,
		MaxAttempts:  d.MaxAttempts,
	}
}

func (b *bench) busPublish(topic string, callers, per int) float64 {
	msgs := b.busMessages()
	p := b.newPublisher()
	defer p.Close()
	warm(b.t, func() error { return p.Publish(topic, message.NewMessage("warm", b.payload)) })
	d := b.run(callers, per, func(from, to int) error { return p.Publish(topic, msgs[from:to]...) })
	return float64(b.n) / d.Seconds()
}

func (b *bench) plainPublish(topic string, callers, per int) float64 {
	ids := b.plainIDs()
	w := b.newWriter()
	defer w.Close()
	warm(b.t, func() error {
		return w.WriteMessages(context.Background(), kafka.Message{Topic: topic, Value: b.payload})
	})
	d := b.run(callers, per, func(from, to int) error { return b.plainWrite(w, topic, ids[from:to]) })
	return float64(b.n) / d.Seconds()
}

// warm publishes one message, retrying while a plain Writer's metadata
// cache has not seen the new topic yet (kafkabus refreshes it itself).
func warm(t *testing.T, f func() error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm-up publish: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// busEndToEnd publishes n messages while a group subscriber consumes and
// acks them; the clock stops when every message was acked and the
// subscriber closed (its final commit done).
func (b *bench) busEndToEnd(topic string, maxInFlight int, commitInterval time.Duration) float64 {
	msgs := b.busMessages()
	p := b.newPublisher()
	defer p.Close()
	sc := kafkabus.DefaultSubscriberConfig()
	sc.Config = b.cfg()
	sc.ConsumerGroup = topic + ".g"
	sc.MaxInFlight = maxInFlight
	sc.CommitInterval = commitInterval
	s, err := kafkabus.NewSubscriber(sc, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	start := time.Now()
	ch, err := s.Subscribe(context.Background(), topic)
	if err != nil {
		b.t.Fatal(err)
	}
	done := make(chan int)
	go func() {
		seen := make(map[string]struct{}, b.n)
		for m := range ch {
			seen[m.UUID] = struct{}{}
			m.Ack()
			if len(seen) == b.n {
				break
			}
		}
		done <- len(seen)
	}()
	b.run(benchPublishers, benchChunk, func(from, to int) error { return p.Publish(topic, msgs[from:to]...) })
	b.wait(done)
	if err := s.Close(); err != nil {
		b.t.Fatal(err)
	}
	return float64(b.n) / time.Since(start).Seconds()
}

func (b *bench) plainEndToEnd(topic string, commitInterval time.Duration) float64 {
	ids := b.plainIDs()
	w := b.newWriter()
	defer w.Close()
	warm(b.t, func() error {
		return w.WriteMessages(context.Background(), kafka.Message{Topic: topic, Value: b.payload})
	})
	d := kafkabus.DefaultSubscriberConfig()
	start := time.Now()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: b.brokers, Topic: topic, GroupID: topic + ".g",
		MinBytes: d.MinBytes, MaxBytes: d.MaxBytes, MaxWait: d.MaxWait, QueueCapacity: 1000,
		HeartbeatInterval: d.HeartbeatInterval, SessionTimeout: d.SessionTimeout, RebalanceTimeout: d.RebalanceTimeout,
		CommitInterval: commitInterval, StartOffset: kafka.FirstOffset,
	})
	done := make(chan int)
	go func() {
		seen := make(map[string]struct{}, b.n)
		for len(seen) < b.n {
			m, err := r.FetchMessage(context.Background())
			if err != nil {
				b.t.Logf("kafka-go FetchMessage: %v", err)
				break
			}
			if len(m.Headers) > 0 { // the warm-up message has none
				seen[string(m.Headers[0].Value)] = struct{}{}
			}
			// A failed commit (say, during a rebalance) costs redeliveries,
			// not messages; kafkabus retries its commits the same way.
			if err := r.CommitMessages(context.Background(), m); err != nil {
				b.t.Logf("kafka-go CommitMessages: %v", err)
			}
		}
		done <- len(seen)
	}()
	b.run(benchPublishers, benchChunk, func(from, to int) error { return b.plainWrite(w, topic, ids[from:to]) })
	b.wait(done)
	if err := r.Close(); err != nil {
		b.t.Fatal(err)
	}
	return float64(b.n) / time.Since(start).Seconds()
}

func (b *bench) wait(done <-chan int) {
	b.t.Helper()
	select {
	case got := <-done:
		if got != b.n {
			b.t.Fatalf("consumed %d of %d", got, b.n)
		}
	case <-time.After(10 * time.Minute):
		b.t.Fatal("end-to-end run did not finish in 10 minutes")
	}
}

// readRange fills a topic with small records and times ReadRange over it.
func (b *bench) readRange(topic string) float64 {
	w := b.newWriter()
	defer w.Close()
	warm(b.t, func() error {
		return w.WriteMessages(context.Background(), kafka.Message{Topic: topic, Value: []byte("x")})
	})
	const records = 300_000
	value := make([]byte, 200)
	batch := make([]kafka.Message, 0, 1000)
	for i := 0; i < records; i++ {
		batch = append(batch, kafka.Message{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: value})
		if len(batch) == cap(batch) {
			if err := w.WriteMessages(context.Background(), batch...); err != nil {
				b.t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	start := time.Now()
	n := 0
	if err := kafkabus.ReadRange(context.Background(), b.cfg(), topic, nil, func(kafka.Message) error { n++; return nil }); err != nil {
		b.t.Fatal(err)
	}
	if n != records+1 { // plus the warm-up record
		b.t.Fatalf("ReadRange read %d of %d", n, records+1)
	}
	return float64(n) / time.Since(start).Seconds()
}
