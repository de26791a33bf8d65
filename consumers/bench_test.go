package consumers

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/schemas"
)

// nopSink counts events and does nothing else, so benchmarks measure the
// runtime.
type nopSink struct{ n atomic.Int64 }

func (s *nopSink) Name() string                           { return "nop" }
func (s *nopSink) Handle(context.Context, Delivery) error { s.n.Add(1); return nil }

type nopBatch struct {
	nopSink
	size int
}

func (s *nopBatch) Name() string   { return "nopbatch" }
func (s *nopBatch) Tuning() Tuning { return Tuning{BatchSize: s.size, BatchWait: 5 * time.Millisecond} }
func (s *nopBatch) HandleBatch(_ context.Context, b []Delivery) error {
	s.n.Add(int64(len(b)))
	return nil
}

// BenchmarkProcess is the runtime's cost per message of handling a batch
// without a bus: decode and validation, ordering, the plug-in call, the
// verdicts and metrics, around a batch plug-in that does nothing.
func BenchmarkProcess(b *testing.B) {
	_, l := testLane(b, fastConfig(), &nopBatch{size: 500}, &capturePublisher{}, nil, nil)
	events := make([]*message.Message, 500)
	for i := range events {
		events[i] = eventMessage(b, testEvent(i))
	}
	batch := make([]*message.Message, len(events))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		for j, m := range events {
			batch[j] = message.NewMessage(m.UUID, m.Payload)
			batch[j].Metadata = m.Metadata
		}
		l.process(batch)
	}
}

// BenchmarkGoChannelRuntime is end-to-end throughput of embedded mode: one
// Handler and one BatchHandler plug-in on the in-process bus.
func BenchmarkGoChannelRuntime(b *testing.B) {
	t := &testing.T{}
	single, batch := &nopSink{}, &nopBatch{size: 100}
	cfg := fastConfig()
	cfg.MaxInFlight = 64
	bus, _, stop := startGoChannelRuntime(t, cfg, single, batch)
	defer stop()
	msgs := make([]*message.Message, 1024)
	for i := range msgs {
		msgs[i] = eventMessage(b, testEvent(i))
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := bus.Publish("test."+schemas.CallsTopic, msgs[i%len(msgs)].Copy()); err != nil {
			b.Fatal(err)
		}
	}
	for single.n.Load() < int64(b.N) || batch.n.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// TestBenchKafkaConsume measures Kafka-mode throughput of a batch plug-in
// that does nothing, from a topic already full: events/s through fetch,
// decode, validation, batching and commit. Gated: CALLSTREAM_BENCH=1.
func TestBenchKafkaConsume(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1")
	}
	k := newKafkaEnv(t, 3)
	const n = 50000
	for from := 0; from < n; from += 5000 {
		k.publish(t, from, from+5000)
	}
	for _, size := range []int{100, 500} {
		sink := &nopBatch{size: size}
		cfg := DefaultConfig()
		cfg.GroupPrefix = "bench-" + time.Now().Format("150405.000") + "-"
		start := time.Now()
		stop := k.start(t, cfg, sink)
		waitFor(t, 5*time.Minute, "all events", func() bool { return sink.n.Load() >= n })
		el := time.Since(start)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		t.Logf("kafka consume, batch size %d: %d events in %s = %.0f events/s (group join included)",
			size, n, el.Round(time.Millisecond), float64(n)/el.Seconds())
	}
}
