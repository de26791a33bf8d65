package consumers

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/pkg/testenv"
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
		l.process(delivery.FromMessages(batch))
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

// TestBenchKafkaConsume compares, on one topic already full of real-sized
// call events, the consumer runtime handing batches to a plug-in that does
// nothing with plain kafka-go (FetchMessage, CommitMessages every batch):
// events/s from the first record to the last (the group join left out) and
// CPU µs per event of this process, each best of three alternating rounds.
// Gated: CALLSTREAM_BENCH=1.
func TestBenchKafkaConsume(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1")
	}
	k := newKafkaEnv(t, 3)
	n := 500_000 // rounds of about a second: shorter ones were dominated by noise
	if v, err := strconv.Atoi(os.Getenv("CALLSTREAM_BENCH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	for from := 0; from < n; from += 5000 {
		k.publish(t, from, min(from+5000, n))
	}
	round := 0
	group := func(what string) string {
		round++
		return fmt.Sprintf("bench-%s-%d-%s", what, round, k.topics.Prefix)
	}
	plain := func() (float64, float64) {
		return testenv.PlainConsume(t, k.kcfg.Brokers, k.topics.Calls, group("plain"), n)
	}
	runtime := func() (float64, float64) {
		sink := &nopBatch{size: 500}
		cfg := DefaultConfig()
		cfg.GroupPrefix = group("runtime")
		stop := k.start(t, cfg, sink)
		waitFor(t, 5*time.Minute, "the first batch", func() bool { return sink.n.Load() > 0 })
		start, cpu0 := time.Now(), testenv.CPUTime()
		seen0 := sink.n.Load()
		waitFor(t, 5*time.Minute, "all events", func() bool { return sink.n.Load() >= int64(n) })
		el, cpu := time.Since(start), testenv.CPUTime()-cpu0
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		got := float64(int64(n) - seen0)
		return got / el.Seconds(), float64(cpu) / float64(time.Microsecond) / got
	}
	var bestPlain, bestRuntime, cpuPlain, cpuRuntime float64
	for range 3 {
		if r, c := plain(); r > bestPlain {
			bestPlain, cpuPlain = r, c
		}
		if r, c := runtime(); r > bestRuntime {
			bestRuntime, cpuRuntime = r, c
		}
	}
	t.Logf("BENCH consume %d events: runtime %.0f events/s, %.2f µs CPU/event | plain kafka-go %.0f events/s, %.2f µs CPU/event | ratio %.0f%%, runtime CPU above kafka-go %.2f µs/event",
		n, bestRuntime, cpuRuntime, bestPlain, cpuPlain, 100*bestRuntime/bestPlain, cpuRuntime-cpuPlain)
}
