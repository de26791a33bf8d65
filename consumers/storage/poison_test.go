package storage

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// TestKafkaPoisonMidBatch: a message that cannot be stored, in the middle
// of a batch from the broker, goes to the DLQ alone, with its raw bytes and
// its position; every other message of the batch is stored and committed.
// Two kinds of poison sit among 300 events: a record that is not a call
// event (the runtime refuses it before the sink sees the batch) and, on
// PostgreSQL, an event the database refuses (text with a NUL byte: the
// sink's batch fails and the row at fault is found alone).
func TestKafkaPoisonMidBatch(t *testing.T) {
	brokers := testenv.Kafka(t)
	forEachDialect(t, func(t *testing.T, dsn string) {
		prefix := testenv.Prefix(t)
		topics := createTopics(t, brokers, prefix, 1)
		const n = 300
		pg := !strings.HasPrefix(dsn, "sqlite:")
		good := n // events that can be stored
		var records []kafka.Message
		var poison [][]byte
		var revisions int64
		for i := range n {
			ev := callEvent(fmt.Sprintf("poison-%04d", i), 1+i%3)
			if i == 200 && pg {
				ev.EndReason = "a\x00b" // PostgreSQL text refuses NUL (22021)
				good--
			} else {
				revisions += int64(ev.Revision)
			}
			records = append(records, eventRecord(t, &ev))
			if i == 100 {
				records = append(records, kafka.Message{Key: []byte("junk"), Value: []byte(`{"not":"a call event"}`)})
			}
		}
		for i, r := range records {
			if i == 101 || (i == 201 && pg) {
				poison = append(poison, r.Value)
			}
		}
		publishRecords(t, brokers, topics.Calls, records)

		reg := prometheus.NewRegistry()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		go func() {
			// One batch can hold everything, and gets a second to fill.
			done <- runConsumer(ctx, brokers, prefix, dsn, 1000, logger, reg, func(c *Config) { c.BatchWait = time.Second })
		}()
		_, revs := waitFor(t, dsn, 2*time.Minute, "every good event stored", func(rows, _ int64) bool {
			return rows == int64(good)
		})
		if revs != revisions {
			t.Fatalf("revision sum %d, want %d", revs, revisions)
		}
		deadline := time.Now().Add(time.Minute)
		for topicSize(t, brokers, topics.DLQ) < int64(len(poison)) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("consumer: %v", err)
		}

		// The DLQ holds the poison alone, as it was, pointing at its offset.
		dlq := readTopic(t, brokers, topics.DLQ)
		if len(dlq) != len(poison) {
			t.Fatalf("DLQ holds %d records, want %d", len(dlq), len(poison))
		}
		for i, d := range dlq {
			if !bytes.Equal(d.Value, poison[i]) {
				t.Errorf("DLQ record %d is %q, want the poison's raw bytes %q", i, d.Value, poison[i])
			}
			want := []string{"101", "201"}[i]
			if off := header(d, schemas.DLQOffsetMetadata); off != want {
				t.Errorf("DLQ record %d names offset %s, want %s", i, off, want)
			}
		}
		// Committed: nothing is left for the group.
		lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer lcancel()
		lag, err := kafkabus.GroupLag(lctx, kafkaConfig(brokers), topics.Calls, prefix+"group-storage")
		if err != nil || lag != 0 {
			t.Fatalf("group lag %d (%v) after the stop, want 0: the batch was not committed", lag, err)
		}
		// Mid-batch: the poison came in batches with good events around it.
		batches, messages := batchSizes(t, reg)
		if batches >= messages/2 {
			t.Fatalf("%d messages came in %d batches: the poison was not in the middle of one", messages, batches)
		}
		t.Logf("%d messages in %d batches; %d dead-lettered", messages, batches, len(dlq))
	})
}

// readTopic reads every record of a one-partition topic.
func readTopic(t *testing.T, brokers []string, topic string) []kafka.Message {
	t.Helper()
	size := topicSize(t, brokers, topic)
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for int64(len(out)) < size {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		out = append(out, m)
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

// batchSizes returns how many batches the runtime took from the bus for
// storage, and how many messages they held, from its batch size histogram.
func batchSizes(t *testing.T, reg *prometheus.Registry) (batches, messages uint64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "callstream_consumer_batch_size" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "plugin") == "storage" {
				h := m.GetHistogram()
				return h.GetSampleCount(), uint64(h.GetSampleSum())
			}
		}
	}
	t.Fatal("no callstream_consumer_batch_size for storage")
	return 0, 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
