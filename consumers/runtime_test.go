package consumers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callstream/callstream/schemas"
)

// startGoChannelRuntime runs a runtime on an in-process GoChannel, as
// callstream run does, and returns the bus and a stop function that returns
// Run's error.
func startGoChannelRuntime(t *testing.T, cfg Config, plugins ...Plugin) (*gochannel.GoChannel, *Runtime, func() error) {
	t.Helper()
	bus := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 64}, nil)
	t.Cleanup(func() { _ = bus.Close() })
	facts := make([]Factory, len(plugins))
	for i, p := range plugins {
		facts[i] = factoryOf(p)
	}
	rt, err := New(cfg, RuntimeDeps{
		Registerer: prometheus.NewRegistry(),
		Topics:     NewTopics("test."),
		Plugins:    facts,
		Subscribe:  Shared(bus),
		Publisher:  bus,
		State:      FileStates(t.TempDir()),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	waitFor(t, 5*time.Second, "runtime ready", func() bool { return rt.Ready(ctx) == nil })
	return bus, rt, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
}

// TestGoChannelEndToEnd runs a Handler plug-in and a BatchHandler plug-in on
// the in-process bus: every valid event reaches both exactly once, the three
// kinds of poison reach the DLQ with their reasons and reach neither
// plug-in, a failing event is retried to success, and Closer plug-ins are
// closed at the end.
func TestGoChannelEndToEnd(t *testing.T) {
	rec := newRecorder("rec")
	rec.failN["call-0007"] = 2
	batch := newBatchRecorder("batch", Tuning{BatchSize: 10})
	bus, _, stop := startGoChannelRuntime(t, fastConfig(), rec, batch)

	dlqCh, err := bus.Subscribe(context.Background(), "test."+schemas.DLQTopic)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	want := map[string]bool{}
	var poison []*message.Message
	for _, p := range poisonMessages(t) {
		poison = append(poison, p.msg)
	}
	for i := 0; i < n; i++ {
		e := testEvent(i)
		want[e.EventID] = true
		if err := bus.Publish("test."+schemas.CallsTopic, eventMessage(t, e)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 5 && len(poison) > 0 {
			// Poison between good events: its neighbours must still pass.
			if err := bus.Publish("test."+schemas.CallsTopic, poison[0]); err != nil {
				t.Fatal(err)
			}
			poison = poison[1:]
		}
	}

	// Each poison message is poisoned once per plug-in.
	reasons := map[string][]string{}
	deadline := time.After(10 * time.Second)
	for got := 0; got < 2*3; got++ {
		select {
		case m := <-dlqCh:
			m.Ack()
			reasons[m.UUID] = append(reasons[m.UUID], m.Metadata.Get(schemas.DLQHandlerMetadata)+": "+m.Metadata.Get(schemas.DLQReasonMetadata))
		case <-deadline:
			t.Fatalf("DLQ got %d messages, want 6: %v", got, reasons)
		}
	}
	for uuid, p := range poisonMessages(t) {
		rs := reasons[uuid]
		if len(rs) != 2 {
			t.Fatalf("%s poisoned %d times, want once per plug-in: %v", uuid, len(rs), rs)
		}
		for _, r := range rs {
			if !strings.Contains(r, p.reason) {
				t.Fatalf("%s: reason %q, want %q", uuid, r, p.reason)
			}
		}
	}
	waitFor(t, 10*time.Second, "all events handled", func() bool {
		return rec.count() == n && len(batch.snapshot()) == n
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for name, seen := range map[string]map[string]int{"handler": rec.snapshot(), "batch": batch.snapshot()} {
		for id, c := range seen {
			if !want[id] || c != 1 {
				t.Fatalf("%s plug-in: event %s seen %d times (expected: %v)", name, id, c, want[id])
			}
		}
	}
	if rec.attemptsOf("call-0007") != 3 {
		t.Fatalf("call-0007 attempts = %d, want 3 (2 failures, then success)", rec.attemptsOf("call-0007"))
	}
	if !rec.closed {
		t.Fatal("Closer plug-in not closed")
	}
}

// TestShutdownFinishesInFlightBatch: a batch being written when the stop
// signal comes is completed and its messages acknowledged before Run
// returns; nothing acknowledged was left unprocessed.
func TestShutdownFinishesInFlightBatch(t *testing.T) {
	batch := newBatchRecorder("batch", Tuning{BatchSize: 5, BatchWait: time.Second})
	batch.delay = 300 * time.Millisecond
	bus, _, stop := startGoChannelRuntime(t, fastConfig(), batch)
	msgs := make([]*message.Message, 5)
	for i := range msgs {
		msgs[i] = eventMessage(t, testEvent(i))
		if err := bus.Publish("test."+schemas.CallsTopic, msgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-batch.started:
	case <-time.After(5 * time.Second):
		t.Fatal("batch never started")
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := len(batch.snapshot()); got != 5 {
		t.Fatalf("in-flight batch finished with %d events, want 5", got)
	}
}

// TestRunnerFailureStopsRuntime: a Runner plug-in that fails ends Run with
// its error.
func TestRunnerFailureStopsRuntime(t *testing.T) {
	p := &failingRunner{recorder: newRecorder("runner"), err: errors.New("timer broke")}
	bus := gochannel.NewGoChannel(gochannel.Config{}, nil)
	defer bus.Close()
	rt, err := New(fastConfig(), RuntimeDeps{
		Topics: NewTopics("test."), Plugins: []Factory{factoryOf(p)}, Publisher: bus,
		Subscribe: Shared(bus),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rt.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "timer broke") {
			t.Fatalf("Run = %v, want the runner's error", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop after its Runner failed")
	}
}

type failingRunner struct {
	*recorder
	err error
}

func (f *failingRunner) Run(ctx context.Context) error {
	select {
	case <-time.After(50 * time.Millisecond):
		return f.err
	case <-ctx.Done():
		return nil
	}
}

func TestNewRejects(t *testing.T) {
	bus := gochannel.NewGoChannel(gochannel.Config{}, nil)
	defer bus.Close()
	sub := Shared(bus)
	type nothing struct{ Plugin }
	tests := map[string]RuntimeDeps{
		"no subscribe":    {Topics: NewTopics("t."), Publisher: bus, Plugins: []Factory{factoryOf(newRecorder("a"))}},
		"no plug-ins":     {Topics: NewTopics("t."), Publisher: bus, Subscribe: sub},
		"no topics":       {Publisher: bus, Subscribe: sub, Plugins: []Factory{factoryOf(newRecorder("a"))}},
		"factory fails":   {Topics: NewTopics("t."), Publisher: bus, Subscribe: sub, Plugins: []Factory{{Name: "x", New: func(Deps) (Plugin, error) { return nil, errors.New("no db") }}}},
		"not a handler":   {Topics: NewTopics("t."), Publisher: bus, Subscribe: sub, Plugins: []Factory{{Name: "x", New: func(Deps) (Plugin, error) { return nothing{}, nil }}}},
		"unknown enabled": {Topics: NewTopics("t."), Publisher: bus, Subscribe: sub, Plugins: []Factory{factoryOf(newRecorder("a"))}},
	}
	for name, deps := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := fastConfig()
			if name == "unknown enabled" {
				cfg.Only = []string{"b"}
			}
			if _, err := New(cfg, deps); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// concurrency is a BatchHandler plug-in that records the most batches it
// had at once.
type concurrency struct {
	tuning    Tuning
	mu        sync.Mutex
	now, peak int
	done      int
}

func (c *concurrency) Name() string   { return "conc" }
func (c *concurrency) Tuning() Tuning { return c.tuning }
func (c *concurrency) HandleBatch(_ context.Context, b []Delivery) error {
	c.mu.Lock()
	c.now++
	c.peak = max(c.peak, c.now)
	c.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	c.mu.Lock()
	c.now--
	c.done += len(b)
	c.mu.Unlock()
	return nil
}

// TestConcurrencyBound: a plug-in gets at most Tuning.Concurrency batches
// at once, and more than one when it asks for more.
func TestConcurrencyBound(t *testing.T) {
	for _, limit := range []int{1, 3} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			c := &concurrency{tuning: Tuning{Concurrency: limit, BatchSize: 2, BatchWait: time.Millisecond}}
			bus, _, stop := startGoChannelRuntime(t, fastConfig(), c)
			for i := 0; i < 30; i++ {
				if err := bus.Publish("test."+schemas.CallsTopic, eventMessage(t, testEvent(i))); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, 10*time.Second, "30 events", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.done == 30 })
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if c.peak > limit || (limit > 1 && c.peak < 2) {
				t.Fatalf("peak concurrency %d with Concurrency %d", c.peak, limit)
			}
		})
	}
}

// holder acknowledges nothing until Flush, like a sink filling a file.
type holder struct {
	flushed chan struct{}
	once    sync.Once
	waiting atomic.Int32
	done    atomic.Int32
}

func (h *holder) Name() string { return "holder" }
func (h *holder) Tuning() Tuning {
	return Tuning{Concurrency: 3, BatchSize: 3, BatchWait: time.Millisecond}
}
func (h *holder) HandleBatch(ctx context.Context, b []Delivery) error {
	h.waiting.Add(int32(len(b)))
	select {
	case <-h.flushed:
		h.done.Add(int32(len(b)))
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (h *holder) Flush() { h.once.Do(func() { close(h.flushed) }) }

// TestShutdownFlushes: a plug-in holding deliveries until its unit of work
// closes is flushed when shutdown begins, so its messages are acknowledged
// at once instead of the shutdown waiting out CloseTimeout.
func TestShutdownFlushes(t *testing.T) {
	h := &holder{flushed: make(chan struct{})}
	cfg := fastConfig()
	cfg.CloseTimeout = 20 * time.Second
	bus, _, stop := startGoChannelRuntime(t, cfg, h)
	for i := 0; i < 3; i++ {
		if err := bus.Publish("test."+schemas.CallsTopic, eventMessage(t, testEvent(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "3 held deliveries", func() bool { return h.waiting.Load() == 3 })
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("shutdown took %s: the plug-in was not flushed", el)
	}
	if h.done.Load() != 3 {
		t.Fatalf("%d of 3 held deliveries completed", h.done.Load())
	}
}

type badCloser struct{ *recorder }

func (badCloser) Close() error { return errors.New("disk gone") }

// TestRunReportsCloseErrors: a plug-in that fails to close makes Run fail,
// and Close after Run does nothing more.
func TestRunReportsCloseErrors(t *testing.T) {
	p := badCloser{newRecorder("bad")}
	_, rt, stop := startGoChannelRuntime(t, fastConfig(), p)
	if err := stop(); err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("Run = %v, want the close error", err)
	}
	if err := rt.Close(); err == nil {
		t.Fatal("Close after Run should report the same error, not close again silently")
	}
}

type lagFunc func(ctx context.Context, topic, group string) (int64, error)

func (f lagFunc) Lag(ctx context.Context, topic, group string) (int64, error) {
	return f(ctx, topic, group)
}

// TestLagGauge: the runtime samples each plug-in's lag into its gauge.
func TestLagGauge(t *testing.T) {
	bus := gochannel.NewGoChannel(gochannel.Config{}, nil)
	defer bus.Close()
	cfg := fastConfig()
	cfg.LagInterval = 10 * time.Millisecond
	var calls atomic.Int64
	rt, err := New(cfg, RuntimeDeps{
		Topics: NewTopics("test."), Plugins: []Factory{factoryOf(newRecorder("a")), factoryOf(newRecorder("b"))},
		Publisher: bus, Subscribe: Shared(bus),
		Lag: lagFunc(func(_ context.Context, topic, group string) (int64, error) {
			calls.Add(1)
			if topic != "test."+schemas.CallsTopic {
				return 0, fmt.Errorf("lag asked for topic %s", topic)
			}
			if group == cfg.GroupID("b") {
				return 0, errors.New("coordinator not available")
			}
			return 42, nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	waitFor(t, 5*time.Second, "lag sampled twice per plug-in", func() bool { return calls.Load() >= 4 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(rt.metrics.lag.WithLabelValues("a")); got != 42 {
		t.Fatalf("lag{plugin=a} = %v, want 42", got)
	}
	if got := testutil.ToFloat64(rt.metrics.lag.WithLabelValues("b")); got != 0 {
		t.Fatalf("lag{plugin=b} = %v after failed samples, want unset (0)", got)
	}
}
