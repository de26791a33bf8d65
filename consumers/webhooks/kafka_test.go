package webhooks

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// The plug-in in the real runtime on the real broker, state in the
// compacted state topic (Kafka mode): events published to the calls topic
// reach a failing endpoint's queue; after a restart of the consumer the
// recovered endpoint gets each one exactly once, and a dead endpoint's
// deliveries end in the DLQ topic with their reason and event JSON.
func TestKafkaEndToEndAcrossRestart(t *testing.T) {
	brokers := testenv.Kafka(t)
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = brokers
	topics := consumers.NewTopics(testenv.Prefix(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: topics.Calls, Partitions: 3}); err != nil {
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
	defer pub.Close()
	kv, err := kafkabus.NewKV(ctx, kcfg, schemas.TopicName(topics.Prefix, consumers.ConsumerStateTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	state := consumers.NewSharedState(kv)

	later := newListener(t, func(_ int, r *http.Request, _ []byte) int {
		if r.Header.Get("X-Phase") == "2" {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	doomed := newListener(t, func(int, *http.Request, []byte) int { return http.StatusServiceUnavailable })
	cfg := testConfig(
		EndpointConfig{Name: "later", URL: later.srv.URL, Secrets: Secrets{newSecret(t)}, Headers: map[string]string{"X-Phase": "1"}},
		EndpointConfig{Name: "doomed", URL: doomed.srv.URL, Secrets: Secrets{newSecret(t)}},
	)
	cfg.RetrySchedule = []time.Duration{time.Millisecond, time.Hour, time.Hour}
	cfg.FlushInterval = 5 * time.Millisecond
	cfg.BreakerFailures = 1 << 20 // the breaker is not what this test is about

	const n = 60
	var msgs []*message.Message
	for i := range n {
		ev := testEvent(i, "call-"+string(rune('a'+i%26))+string(rune('a'+i/26)), 1)
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		m := message.NewMessage(ev.EventID, b)
		m.Metadata.Set(schemas.HeaderType, ev.Type())
		m.Metadata.Set(schemas.HeaderSpecVersion, schemas.SpecVersion)
		m.Metadata.Set(schemas.HeaderID, ev.EventID)
		m.Metadata.Set(schemas.KeyMetadata, ev.CallKey)
		msgs = append(msgs, m)
	}
	if err := pub.Publish(topics.Calls, msgs...); err != nil {
		t.Fatal(err)
	}

	run := func(cfg Config, now func() time.Time) (stop func()) {
		reg := prometheus.NewRegistry()
		logger := slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelError}))
		rcfg := consumers.DefaultConfig()
		rt, err := consumers.New(rcfg, consumers.RuntimeDeps{
			Logger: logger, Registerer: reg, Topics: topics, Publisher: pub,
			Plugins: []consumers.Factory{{Name: Name, New: func(deps consumers.Deps) (consumers.Plugin, error) {
				p, err := New(cfg, deps)
				if err == nil && now != nil {
					p.now = now
				}
				return p, err
			}}},
			Subscribe: testenv.KafkaSubscribers(kcfg, reg),
			State:     state.For,
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = rt.Run(rctx); close(done) }()
		var once sync.Once
		stop = func() {
			once.Do(func() {
				rcancel()
				select {
				case <-done:
				case <-time.After(45 * time.Second):
					t.Fatal("runtime did not stop")
				}
			})
		}
		t.Cleanup(stop)
		return stop
	}

	stop1 := run(cfg, nil)
	eventually(t, 60*time.Second, "two failed attempts per event at both endpoints", func() bool {
		return len(later.requests()) >= 2*n && len(doomed.requests()) >= 2*n
	})
	time.Sleep(100 * time.Millisecond) // attempt counts reach the state topic
	stop1()

	cfg2 := cfg
	cfg2.Endpoints = slices.Clone(cfg.Endpoints)
	cfg2.Endpoints[0].Headers = map[string]string{"X-Phase": "2"}
	cfg2.RetrySchedule = []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond}
	stop2 := run(cfg2, func() time.Time { return time.Now().Add(2 * time.Hour) })
	eventually(t, 60*time.Second, "every event delivered after the restart", func() bool {
		return len(later.successes()) == n
	})
	dead := readDLQ(t, brokers, topics.DLQ, n)
	stop2()

	for id, c := range later.successes() {
		if c != 1 {
			t.Errorf("event %s delivered %d times as a success", id, c)
		}
	}
	seen := map[string]bool{}
	for _, m := range dead {
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		if h[schemas.DLQHandlerMetadata] != Name || h[schemas.DLQEndpointMetadata] != "doomed" || !contains(h[schemas.DLQReasonMetadata], "last status 503") {
			t.Fatalf("DLQ record headers %v", h)
		}
		var ev schemas.CallEvent
		if err := json.Unmarshal(m.Value, &ev); err != nil || h[schemas.HeaderID] != ev.EventID || string(m.Key) != ev.CallKey {
			t.Fatalf("DLQ record is not the event: key %q, %v", m.Key, err)
		}
		seen[ev.EventID] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct events in the DLQ, want %d", len(seen), n)
	}
}

// readDLQ reads want records from the start of the DLQ topic.
func readDLQ(t *testing.T, brokers []string, topic string, want int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < want {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("read DLQ after %d of %d records: %v", len(out), want, err)
		}
		out = append(out, m)
	}
	return out
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
