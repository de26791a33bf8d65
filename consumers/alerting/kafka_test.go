package alerting

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// TestKafkaStateAndAlertsTopic runs the restart scenario in Kafka mode: the
// alert state lives in a compacted topic (the runtime's TopicState), alert
// events go to a real alerts topic, keyed by alert_id.
func TestKafkaStateAndAlertsTopic(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = brokers
	topics := consumers.NewTopics(testenv.Prefix(t))
	if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: topics.Alerts, Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	stateTopic := topics.Prefix + "consumer-state.v1"
	pcfg := kafkabus.DefaultPublisherConfig()
	pcfg.Config = kcfg
	pub, err := kafkabus.NewPublisher(pcfg, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	// Each "process" opens the state topic afresh.
	newPlugin := func() *Plugin {
		kv, err := kafkabus.NewKV(ctx, kcfg, stateTopic)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kv.Close() })
		ts := consumers.NewSharedState(kv)
		p, err := New(testConfig(""), consumers.Deps{Publisher: pub, Topics: topics, State: ts.For(Name)})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	all, fireAt := spikeStream(t)
	a := newPlugin()
	feed(t, a, all[:fireAt+20])
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := newPlugin()
	feed(t, b, all[fireAt-30:])
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	recs := readAll(ctx, t, kcfg, topics.Alerts, 2)
	if len(recs) != 2 {
		t.Fatalf("alerts topic holds %d records, want a firing and its resolution", len(recs))
	}
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []string{schemas.TypeAlertFiring, schemas.TypeAlertResolved}
	for i, r := range recs {
		if err := v.ValidateAlert(r.Value); err != nil {
			t.Fatal(err)
		}
		a := decodeAlert(t, r.Value)
		headers := map[string]string{}
		for _, h := range r.Headers {
			headers[h.Key] = string(h.Value)
		}
		if string(r.Key) != a.AlertID || headers[schemas.HeaderType] != wantTypes[i] || headers[schemas.HeaderSpecVersion] != "1.0" ||
			headers[schemas.HeaderContentType] != schemas.JSONContentType || headers[schemas.HeaderID] == "" {
			t.Fatalf("record %d: key %q, headers %v, alert %s %s", i, r.Key, headers, a.AlertID, a.State)
		}
		if r.Partition != recs[0].Partition || a.AlertID != decodeAlert(t, recs[0].Value).AlertID {
			t.Fatal("the firing and its resolution are not one alert in one partition")
		}
	}
}

// readAll reads every partition of topic from the start until want records
// were read or nothing more comes.
func readAll(ctx context.Context, t *testing.T, kcfg kafkabus.Config, topic string, want int) []kafka.Message {
	t.Helper()
	ids, err := kafkabus.PartitionIDs(ctx, kcfg, topic)
	if err != nil {
		t.Fatal(err)
	}
	var out []kafka.Message
	for _, id := range ids {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: kcfg.Brokers, Topic: topic, Partition: id, MaxWait: 200 * time.Millisecond})
		for len(out) < want {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			m, err := r.ReadMessage(rctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		_ = r.Close()
	}
	return out
}
