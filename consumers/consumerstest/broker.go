// Package consumerstest runs consumer plug-ins inside the real consumer
// runtime on the real Kafka broker, for the benchmarks of the plug-ins
// ("from the broker" figures of make bench): events are published to a
// topic of their own first, then the runtime reads them in the plug-in's
// consumer group, exactly as `callstream consume` does.
package consumerstest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// Result is one run of FromBroker.
type Result struct {
	Events  int
	Elapsed time.Duration // from the first handled event to the last
	CPU     time.Duration // of this process over the same span
	// Plain is the baseline of the same run: plain kafka-go reading the
	// same topic (see testenv.PlainConsume), in events/s.
	Plain float64
}

// PerSecond is the throughput.
func (r Result) PerSecond() float64 { return float64(r.Events) / r.Elapsed.Seconds() }

// CPUPerEvent is the process CPU per event, in µs.
func (r Result) CPUPerEvent() float64 {
	return float64(r.CPU.Microseconds()) / float64(r.Events)
}

// String is the figure line the benchmarks print.
func (r Result) String() string {
	return fmt.Sprintf("%d events in %s = %.0f events/s, %.2f µs CPU/event | plain kafka-go fetch+commit of the same topic %.0f events/s, ratio %.0f%% (load %s)",
		r.Events, r.Elapsed.Round(time.Millisecond), r.PerSecond(), r.CPUPerEvent(), r.Plain, 100*r.PerSecond()/r.Plain, testenv.LoadAvg())
}

// FromBroker publishes events (keyed by call key, on partitions topic
// partitions) to a fresh calls topic, then runs the plug-in f builds in the
// runtime until done reports true (nil: until the runtime has handled every
// event), and returns the figures. The plug-in's own side (an HTTP
// receiver, a database) is the caller's.
func FromBroker(t testing.TB, f consumers.Factory, events []schemas.CallEvent, partitions int, done func() bool) Result {
	t.Helper()
	kcfg := testenv.KafkaConfig(t)
	prefix := testenv.Prefix(t)
	topics := consumers.NewTopics(prefix)
	ctx := context.Background()
	if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: topics.Calls, Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	if err := kafkabus.EnsureTopics(ctx, kcfg, topics.Outputs(nil)...); err != nil {
		t.Fatal(err)
	}
	pc := kafkabus.DefaultPublisherConfig()
	pc.Config, pc.BatchBytes = kcfg, 16<<20
	pub, err := kafkabus.NewPublisher(pc, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	publish(t, pub, topics.Calls, events)
	plain, _ := testenv.PlainConsume(t, kcfg.Brokers, topics.Calls, "plain-"+topics.Calls, len(events))

	cfg := consumers.DefaultConfig()
	cfg.GroupPrefix = prefix
	reg := prometheus.NewRegistry()
	rt, err := consumers.New(cfg, consumers.RuntimeDeps{
		Registerer: reg, Topics: topics, Publisher: pub,
		Plugins:   []consumers.Factory{f},
		Subscribe: testenv.KafkaSubscribers(kcfg, reg),
		State:     consumers.FileStates(t.TempDir()),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- rt.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("runtime: %v", err)
		}
	}()
	// Progress from the runtime's metrics: polling the sink would cost
	// the consumer CPU.
	wait(t, 2*time.Minute, "the first event handled", func() bool { return handled(t, reg) > 0 })
	start, cpu0 := time.Now(), testenv.CPUTime()
	if done == nil {
		done = func() bool { return handled(t, reg) >= float64(len(events)) }
	}
	wait(t, 5*time.Minute, "the end of the run", done)
	return Result{Events: len(events), Elapsed: time.Since(start), CPU: testenv.CPUTime() - cpu0, Plain: plain}
}

func publish(t testing.TB, pub message.Publisher, topic string, events []schemas.CallEvent) {
	t.Helper()
	const batch = 2000
	msgs := make([]*message.Message, 0, batch)
	for i := range events {
		v, err := json.Marshal(&events[i])
		if err != nil {
			t.Fatal(err)
		}
		m := message.NewMessage(events[i].EventID, v)
		m.Metadata.Set(schemas.KeyMetadata, events[i].CallKey)
		msgs = append(msgs, m)
		if len(msgs) == batch || i == len(events)-1 {
			if err := pub.Publish(topic, msgs...); err != nil {
				t.Fatalf("publish to %s: %v", topic, err)
			}
			msgs = msgs[:0]
		}
	}
}

// handled sums callstream_consumer_messages_total{outcome="handled"}.
func handled(t testing.TB, reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "callstream_consumer_messages_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "outcome" && l.GetValue() == "handled" {
						sum += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return sum
}

func wait(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s not reached", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Events returns n when CALLSTREAM_BENCH_EVENTS does not say otherwise.
func Events(n int) int {
	if v, err := strconv.Atoi(os.Getenv("CALLSTREAM_BENCH_EVENTS")); err == nil && v > 0 {
		return v
	}
	return n
}
