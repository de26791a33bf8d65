package consumers

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// kafkaEnv is one test's private set of topics on the real broker.
type kafkaEnv struct {
	kcfg   kafkabus.Config
	topics Topics
	pub    *kafkabus.Publisher
}

func newKafkaEnv(t *testing.T, partitions int) *kafkaEnv {
	t.Helper()
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = testenv.Kafka(t)
	topics := NewTopics(testenv.Prefix(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: topics.Calls, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	if err := kafkabus.EnsureTopics(ctx, kcfg, topics.Outputs(nil)...); err != nil {
		t.Fatal(err)
	}
	pc := kafkabus.DefaultPublisherConfig()
	pc.Config = kcfg
	pub, err := kafkabus.NewPublisher(pc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return &kafkaEnv{kcfg: kcfg, topics: topics, pub: pub}
}

// start runs a Kafka-mode runtime, built as callstream consume builds it,
// and returns a function that stops it and returns Run's error.
func (k *kafkaEnv) start(t *testing.T, cfg Config, plugins ...Plugin) func() error {
	t.Helper()
	facts := make([]Factory, len(plugins))
	names := make([]string, len(plugins))
	for i, p := range plugins {
		facts[i], names[i] = factoryOf(p), p.Name()
	}
	k.ensure(t, names...)
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt, err := New(cfg, RuntimeDeps{
		Logger:     logger,
		Registerer: reg,
		Topics:     k.topics,
		Plugins:    facts,
		Subscribe:  testenv.KafkaSubscribers(k.kcfg, reg),
		Publisher:  k.pub,
		Lag:        kafkabus.NewAdmin(k.kcfg),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(runCtx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopRun()
		select {
		case err := <-done:
			return err
		case <-time.After(45 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// ensure creates the output topics of the plug-ins, as callstream consume
// does before it starts them.
func (k *kafkaEnv) ensure(t *testing.T, plugins ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkabus.EnsureTopics(ctx, k.kcfg, k.topics.Outputs(plugins)...); err != nil {
		t.Fatal(err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// publish sends events [from, to) keyed by call key, as the producer does.
func (k *kafkaEnv) publish(t *testing.T, from, to int) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	var msgs []*message.Message
	for i := from; i < to; i++ {
		e := testEvent(i)
		ids[e.EventID] = true
		msgs = append(msgs, eventMessage(t, e))
	}
	if err := k.pub.Publish(k.topics.Calls, msgs...); err != nil {
		t.Fatal(err)
	}
	return ids
}

// readAll reads every record of a single-partition-or-more topic up to its
// end offsets at call time.
func readAll(t *testing.T, kcfg kafkabus.Config, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids, err := kafkabus.PartitionIDs(ctx, kcfg, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := kafkabus.EndOffsets(ctx, kcfg, topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []kafka.Message
	for _, p := range ids {
		if ends[p] == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: kcfg.Brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
			out = append(out, m)
			if m.Offset >= ends[p]-1 {
				break
			}
		}
		r.Close()
	}
	return out
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestKafkaPoisonAndNeighbours is evidence 4 of the issue against the real
// broker: a non-JSON message, one failing the schema and one of an unknown
// major version each end in the DLQ topic with a reason and the original
// topic/partition/offset, while every event around them reaches both a
// Handler and a BatchHandler plug-in exactly once, and both groups end with
// no lag.
func TestKafkaPoisonAndNeighbours(t *testing.T) {
	k := newKafkaEnv(t, 3)
	want := k.publish(t, 0, 30)
	poison := poisonMessages(t)
	for _, p := range poison {
		if err := k.pub.Publish(k.topics.Calls, p.msg); err != nil {
			t.Fatal(err)
		}
	}
	for id := range k.publish(t, 30, 60) {
		want[id] = true
	}

	rec := newRecorder("rec")
	rec.failN["call-0042"] = 2 // retried, then fine
	batch := newBatchRecorder("batch", Tuning{BatchSize: 16})
	cfg := fastConfig()
	cfg.GroupPrefix = "test-" + k.topics.Prefix
	lagCtx, lagCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer lagCancel()
	if lag, err := kafkabus.GroupLag(lagCtx, k.kcfg, k.topics.Calls, cfg.GroupID("rec")); err != nil || lag != 63 {
		t.Fatalf("lag before consuming = %d, %v; want 63 (60 events, 3 poison)", lag, err)
	}
	stop := k.start(t, cfg, rec, batch)

	waitFor(t, 60*time.Second, "both plug-ins to see all 60 events", func() bool {
		return rec.count() == len(want) && len(batch.snapshot()) == len(want)
	})
	var dlq []kafka.Message
	waitFor(t, 30*time.Second, "6 DLQ records", func() bool {
		dlq = readAll(t, k.kcfg, k.topics.DLQ)
		return len(dlq) >= 6
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	for name, seen := range map[string]map[string]int{"rec": rec.snapshot(), "batch": batch.snapshot()} {
		for id, n := range seen {
			if !want[id] || n != 1 {
				t.Fatalf("%s: event %s handled %d times (published: %v)", name, id, n, want[id])
			}
		}
	}
	if len(dlq) != 6 {
		t.Fatalf("DLQ holds %d records, want 6 (3 poison x 2 plug-ins)", len(dlq))
	}
	calls := readAll(t, k.kcfg, k.topics.Calls)
	byPos := map[string]kafka.Message{}
	for _, m := range calls {
		byPos[strconv.Itoa(m.Partition)+"/"+strconv.FormatInt(m.Offset, 10)] = m
	}
	perPoison := map[string]int{}
	for _, d := range dlq {
		uuid := header(d, kafkabus.UUIDHeader)
		p, ok := poison[uuid]
		if !ok {
			t.Fatalf("unexpected DLQ record %s", uuid)
		}
		perPoison[uuid]++
		if r := header(d, schemas.DLQReasonMetadata); !strings.Contains(r, p.reason) {
			t.Fatalf("%s: reason %q, want %q", uuid, r, p.reason)
		}
		if h := header(d, schemas.DLQHandlerMetadata); h != "rec" && h != "batch" {
			t.Fatalf("%s: handler %q", uuid, h)
		}
		if tp := header(d, schemas.DLQTopicMetadata); tp != k.topics.Calls {
			t.Fatalf("%s: topic %q, want %q", uuid, tp, k.topics.Calls)
		}
		orig, ok := byPos[header(d, schemas.DLQPartitionMetadata)+"/"+header(d, schemas.DLQOffsetMetadata)]
		if !ok || !bytes.Equal(orig.Value, d.Value) {
			t.Fatalf("%s: partition/offset %s/%s do not point at the original record", uuid,
				header(d, schemas.DLQPartitionMetadata), header(d, schemas.DLQOffsetMetadata))
		}
		if !bytes.Equal(orig.Key, d.Key) {
			t.Fatalf("%s: DLQ key %q, original key %q", uuid, d.Key, orig.Key)
		}
	}
	for uuid, n := range perPoison {
		if n != 2 {
			t.Fatalf("%s poisoned %d times, want once per plug-in", uuid, n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range []string{"rec", "batch"} {
		lag, err := kafkabus.GroupLag(ctx, k.kcfg, k.topics.Calls, cfg.GroupID(p))
		if err != nil {
			t.Fatal(err)
		}
		if lag != 0 {
			t.Fatalf("group of %s has lag %d after a graceful stop, want 0", p, lag)
		}
	}
}

// TestKafkaGracefulShutdownExactlyOnce stops a runtime while batches are in
// flight, then starts another in the same consumer group: every event is
// handled exactly once across the two runs. A duplicate would mean an
// in-flight batch finished but was not committed; a missing event would
// mean something was committed that was never handled.
func TestKafkaGracefulShutdownExactlyOnce(t *testing.T) {
	k := newKafkaEnv(t, 3)
	const n = 300
	want := k.publish(t, 0, n)
	cfg := fastConfig()
	cfg.GroupPrefix = "test-" + k.topics.Prefix

	first := newBatchRecorder("sink", Tuning{BatchSize: 20, BatchWait: 50 * time.Millisecond})
	first.delay = 100 * time.Millisecond
	stop := k.start(t, cfg, first)
	waitFor(t, 60*time.Second, "the first run to be under way", func() bool { return len(first.snapshot()) >= 40 })
	if err := stop(); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	seen1 := first.snapshot()
	if len(seen1) == n {
		t.Fatalf("the first run handled everything before the stop; the test proves nothing")
	}

	second := newBatchRecorder("sink", Tuning{BatchSize: 20, BatchWait: 50 * time.Millisecond})
	stop = k.start(t, cfg, second)
	waitFor(t, 60*time.Second, "the second run to finish the rest", func() bool {
		return len(seen1)+len(second.snapshot()) >= n
	})
	// Give a duplicate the chance to show up.
	time.Sleep(500 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	seen2 := second.snapshot()
	for id := range want {
		c := seen1[id] + seen2[id]
		if c != 1 {
			t.Fatalf("event %s handled %d times across the restart (run 1: %d, run 2: %d)", id, c, seen1[id], seen2[id])
		}
	}
	t.Logf("run 1 handled %d, run 2 handled %d", len(seen1), len(seen2))
}

// The topics the runtime and plug-ins write to are named by Outputs, so the
// commands create them before any plug-in runs: the alerts topic was once
// missing, and alerting retried forever.
func TestTopicsOutputs(t *testing.T) {
	topics := NewTopics("p.")
	got := topics.Outputs([]string{"storage", "webhooks"})
	want := []string{"p.dlq.v1", "p.alerts.v1", "p.retry.storage.v1", "p.retry.webhooks.v1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Outputs = %v, want %v", got, want)
	}
	if r := topics.Retry("lake"); r != schemas.RetryTopic("p.", "lake") {
		t.Fatalf("Retry(lake) = %s", r)
	}
}
