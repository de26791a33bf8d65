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

// capturePublisher records what a plug-in chain publishes to the DLQ.
type capturePublisher struct {
	mu   sync.Mutex
	msgs map[string][]*message.Message // topic -> messages
	fail error
}

func (c *capturePublisher) Publish(topic string, msgs ...*message.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	if c.msgs == nil {
		c.msgs = map[string][]*message.Message{}
	}
	c.msgs[topic] = append(c.msgs[topic], msgs...)
	return nil
}

func (c *capturePublisher) Close() error { return nil }

func (c *capturePublisher) on(topic string) []*message.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*message.Message(nil), c.msgs[topic]...)
}

// newTestRuntime builds a runtime around one plug-in with a capturing
// publisher, for tests of the handler chain without a bus.
func newTestRuntime(t *testing.T, p Plugin, pub message.Publisher, reg prometheus.Registerer) *Runtime {
	t.Helper()
	rt, err := New(fastConfig(), RuntimeDeps{
		Registerer: reg,
		Topics:     NewTopics("test."),
		Plugins:    []Factory{factoryOf(p)},
		Subscribe:  func(string, Tuning) (message.Subscriber, error) { return nil, errors.New("unused") },
		Publisher:  pub,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// TestHandlerChain runs single messages through one plug-in's middleware
// chain. Each case depends on the order of the middlewares: decoding sits
// outside retries (a poison message is tried once), panic recovery inside
// them (a panic is retried), the poison queue outside retries (it sees only
// the final error) and metrics outermost (a poisoned message counts as
// poisoned, not handled).
func TestHandlerChain(t *testing.T) {
	poison := poisonMessages(t)
	tests := []struct {
		name         string
		msg          func() *message.Message
		setup        func(r *recorder)
		pubFail      error
		wantErr      bool
		wantDLQ      string // substring of the DLQ reason; "" means no DLQ message
		wantAttempts int    // calls of the plug-in for this message's key
		wantOutcome  string
	}{
		{name: "valid event handled once", msg: func() *message.Message { return eventMessage(t, testEvent(1)) },
			wantAttempts: 1, wantOutcome: outcomeHandled},
		{name: "transient errors retried then success", msg: func() *message.Message { return eventMessage(t, testEvent(1)) },
			setup: func(r *recorder) { r.failN["call-0001"] = 2 }, wantAttempts: 3, wantOutcome: outcomeHandled},
		{name: "errors past the retry budget go to DLQ", msg: func() *message.Message { return eventMessage(t, testEvent(1)) },
			setup: func(r *recorder) { r.failN["call-0001"] = 100 }, wantDLQ: "failed 4 times: transient failure 4",
			wantAttempts: 4, wantOutcome: outcomePoisoned},
		{name: "panic recovered, retried, then DLQ", msg: func() *message.Message { return eventMessage(t, testEvent(1)) },
			setup: func(r *recorder) { r.panicKey = "call-0001" }, wantDLQ: "panicked: boom on call-0001",
			wantAttempts: 4, wantOutcome: outcomePoisoned},
		{name: "permanent error not retried", msg: func() *message.Message { return eventMessage(t, testEvent(1)) },
			setup: func(r *recorder) { r.permKey = "call-0001" }, wantDLQ: "refused for good",
			wantAttempts: 1, wantOutcome: outcomePoisoned},
		{name: "not JSON never reaches the plug-in", msg: func() *message.Message { return poison["poison-not-json"].msg },
			wantDLQ: poison["poison-not-json"].reason, wantOutcome: outcomePoisoned},
		{name: "schema failure never reaches the plug-in", msg: func() *message.Message { return poison["poison-schema"].msg },
			wantDLQ: "call_status", wantOutcome: outcomePoisoned},
		{name: "unknown major version never reaches the plug-in", msg: func() *message.Message { return poison["poison-v2"].msg },
			wantDLQ: `ce_type "callstream.call.created.v2" has major version "v2"`, wantOutcome: outcomePoisoned},
		{name: "DLQ down: nacked, not lost", msg: func() *message.Message { return poison["poison-not-json"].msg },
			pubFail: errors.New("broker down"), wantErr: true, wantOutcome: outcomeFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder("rec")
			if tt.setup != nil {
				tt.setup(rec)
			}
			pub := &capturePublisher{fail: tt.pubFail}
			reg := prometheus.NewRegistry()
			rt := newTestRuntime(t, rec, pub, reg)
			h := rt.handler(rt.plugins[0], nil, context.Background(), context.Background())

			msg := tt.msg()
			_, err := h(msg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("handler error = %v, want error %v", err, tt.wantErr)
			}
			dlq := pub.on("test." + schemas.DLQTopic)
			if tt.wantDLQ == "" {
				if len(dlq) != 0 {
					t.Fatalf("unexpected DLQ message: %v", dlq[0].Metadata)
				}
			} else {
				if len(dlq) != 1 {
					t.Fatalf("DLQ got %d messages, want 1", len(dlq))
				}
				md := dlq[0].Metadata
				if r := md.Get(schemas.DLQReasonMetadata); !strings.Contains(r, tt.wantDLQ) {
					t.Fatalf("DLQ reason %q does not contain %q", r, tt.wantDLQ)
				}
				if md.Get(schemas.DLQHandlerMetadata) != "rec" || md.Get(schemas.DLQTopicMetadata) != "test."+schemas.CallsTopic {
					t.Fatalf("DLQ metadata %v: wrong handler or topic", md)
				}
				if _, err := time.Parse(time.RFC3339Nano, md.Get(schemas.DLQTimeMetadata)); err != nil {
					t.Fatalf("DLQ time: %v", err)
				}
				if string(dlq[0].Payload) != string(msg.Payload) {
					t.Fatal("DLQ payload differs from the original")
				}
				if _, ok := msg.Metadata[schemas.DLQReasonMetadata]; ok {
					t.Fatal("the original message's metadata was modified")
				}
			}
			if got := rec.attemptsOf("call-0001"); got != tt.wantAttempts {
				t.Fatalf("plug-in attempts = %d, want %d", got, tt.wantAttempts)
			}
			for _, o := range []string{outcomeHandled, outcomePoisoned, outcomeFailed} {
				want := 0.0
				if o == tt.wantOutcome {
					want = 1
				}
				if got := testutil.ToFloat64(rt.metrics.messages.WithLabelValues("rec", o)); got != want {
					t.Fatalf("messages{outcome=%s} = %v, want %v", o, got, want)
				}
			}
		})
	}
}

// TestRetryStopsAtShutdown: a message in retry backoff when shutdown starts
// is nacked (delivered again next run), not sent to the DLQ.
func TestRetryStopsAtShutdown(t *testing.T) {
	rec := newRecorder("rec")
	rec.failN["call-0001"] = 1000
	pub := &capturePublisher{}
	cfg := fastConfig()
	cfg.MaxRetries = 1000
	cfg.RetryInitialInterval = 50 * time.Millisecond
	rt, err := New(cfg, RuntimeDeps{
		Topics: NewTopics("test."), Plugins: []Factory{factoryOf(rec)}, Publisher: pub,
		Subscribe: func(string, Tuning) (message.Subscriber, error) { return nil, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	stop, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	h := rt.handler(rt.plugins[0], nil, context.Background(), stop)
	start := time.Now()
	_, err = h(eventMessage(t, testEvent(1)))
	if !errors.Is(err, errShuttingDown) {
		t.Fatalf("err = %v, want errShuttingDown", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("retries did not stop promptly at shutdown")
	}
	if n := len(pub.on("test." + schemas.DLQTopic)); n != 0 {
		t.Fatalf("%d messages went to the DLQ at shutdown", n)
	}
}

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
		Subscribe:  SharedSubscribe(bus),
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
		Subscribe: func(string, Tuning) (message.Subscriber, error) { return SharedSubscriber(bus), nil },
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
	sub := func(string, Tuning) (message.Subscriber, error) { return SharedSubscriber(bus), nil }
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

// concurrency is a Handler plug-in that records the most calls it had at
// once.
type concurrency struct {
	tuning    Tuning
	mu        sync.Mutex
	now, peak int
	done      int
}

func (c *concurrency) Name() string   { return "conc" }
func (c *concurrency) Tuning() Tuning { return c.tuning }
func (c *concurrency) Handle(context.Context, Delivery) error {
	c.mu.Lock()
	c.now++
	c.peak = max(c.peak, c.now)
	c.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	c.mu.Lock()
	c.now--
	c.done++
	c.mu.Unlock()
	return nil
}

// TestMaxInFlightOnGoChannel: the in-process bus hands out every message
// at once; the runtime still keeps a plug-in's concurrent deliveries within
// its MaxInFlight.
func TestMaxInFlightOnGoChannel(t *testing.T) {
	for _, limit := range []int{1, 3} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			c := &concurrency{tuning: Tuning{MaxInFlight: limit}}
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
				t.Fatalf("peak concurrency %d with MaxInFlight %d", c.peak, limit)
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
func (h *holder) Handle(ctx context.Context, _ Delivery) error {
	h.waiting.Add(1)
	select {
	case <-h.flushed:
		h.done.Add(1)
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

// TestLagGauge: the runtime samples each plug-in's lag into its gauge.
func TestLagGauge(t *testing.T) {
	bus := gochannel.NewGoChannel(gochannel.Config{}, nil)
	defer bus.Close()
	cfg := fastConfig()
	cfg.LagInterval = 10 * time.Millisecond
	var calls atomic.Int64
	rt, err := New(cfg, RuntimeDeps{
		Topics: NewTopics("test."), Plugins: []Factory{factoryOf(newRecorder("a")), factoryOf(newRecorder("b"))},
		Publisher: bus, Subscribe: SharedSubscribe(bus),
		Lag: func(_ context.Context, plugin string) (int64, error) {
			calls.Add(1)
			if plugin == "b" {
				return 0, errors.New("coordinator not available")
			}
			return 42, nil
		},
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
