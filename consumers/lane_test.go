package consumers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/schemas"
)

// capturePublisher records what a lane publishes; fail, when set, decides
// the error of each Publish call (nil: accepted).
type capturePublisher struct {
	mu    sync.Mutex
	msgs  map[string][]*message.Message // topic -> messages
	fail  func(call int) error
	calls int
}

func (c *capturePublisher) Publish(topic string, msgs ...*message.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.fail != nil {
		if err := c.fail(c.calls); err != nil {
			return err
		}
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

// testLane builds a runtime around one plug-in and that plug-in's lane,
// without a bus: for tests of how a batch is handled.
func testLane(t testing.TB, cfg Config, p Plugin, pub message.Publisher, reg prometheus.Registerer, state StateStore) (*Runtime, *lane) {
	t.Helper()
	deps := RuntimeDeps{
		Registerer: reg,
		Topics:     NewTopics("test."),
		Plugins:    []Factory{factoryOf(p)},
		Subscribe:  func(string, int) (message.Subscriber, error) { return nil, errors.New("unused") },
		Publisher:  pub,
	}
	if state != nil {
		deps.State = func(string) StateStore { return state }
	}
	rt, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return rt, rt.newLane(rt.plugins[0])
}

// verdict returns "ack", "nack" or "" for a message that got none.
func verdict(m *message.Message) string {
	select {
	case <-m.Acked():
		return "ack"
	case <-m.Nacked():
		return "nack"
	default:
		return ""
	}
}

// TestProcessOutcomes hands single messages to one plug-in's lane. Each
// case pins a rule of the runtime: decoding comes before the plug-in (a
// poison message never reaches it), unclassified errors are retried then
// dead-lettered, a panic is an error like any other, permanent errors are
// not retried, transient ones are never dead-lettered, and the DLQ copy
// keeps the original payload and metadata.
func TestProcessOutcomes(t *testing.T) {
	poison := poisonMessages(t)
	tests := []struct {
		name         string
		msg          func() *message.Message
		setup        func(r *recorder)
		wantDLQ      string // substring of the DLQ reason; "" means no DLQ message
		wantAttempts int    // calls of the plug-in for this message's key
		wantOutcome  string
	}{
		{name: "valid event handled once", msg: func() *message.Message { return eventMessage(t, testEvent(1)) },
			wantAttempts: 1, wantOutcome: outcomeHandled},
		{name: "unclassified errors retried then success", msg: func() *message.Message { return eventMessage(t, testEvent(1)) },
			setup: func(r *recorder) { r.failN["call-0001"] = 2 }, wantAttempts: 3, wantOutcome: outcomeHandled},
		{name: "errors past the retry budget go to DLQ", msg: func() *message.Message { return eventMessage(t, testEvent(1)) },
			setup: func(r *recorder) { r.failN["call-0001"] = 100 }, wantDLQ: "plug-in rec failed 4 times: transient failure 4",
			wantAttempts: 4, wantOutcome: outcomePoisoned},
		{name: "panic recovered, retried, then DLQ", msg: func() *message.Message { return eventMessage(t, testEvent(1)) },
			setup: func(r *recorder) { r.panicKey = "call-0001" }, wantDLQ: "panicked: boom on call-0001",
			wantAttempts: 4, wantOutcome: outcomePoisoned},
		{name: "permanent error not retried", msg: func() *message.Message { return eventMessage(t, testEvent(1)) },
			setup: func(r *recorder) { r.permKeys = []string{"call-0001"} }, wantDLQ: "refused for good",
			wantAttempts: 1, wantOutcome: outcomePoisoned},
		{name: "transient errors are waited out, never dead-lettered", msg: func() *message.Message { return eventMessage(t, testEvent(1)) },
			setup: func(r *recorder) { r.failN["call-0001"] = 12; r.transient = true }, wantAttempts: 13, wantOutcome: outcomeHandled},
		{name: "not JSON never reaches the plug-in", msg: func() *message.Message { return poison["poison-not-json"].msg },
			wantDLQ: poison["poison-not-json"].reason, wantOutcome: outcomePoisoned},
		{name: "schema failure never reaches the plug-in", msg: func() *message.Message { return poison["poison-schema"].msg },
			wantDLQ: "call_status", wantOutcome: outcomePoisoned},
		{name: "unknown major version never reaches the plug-in", msg: func() *message.Message { return poison["poison-v2"].msg },
			wantDLQ: `ce_type "callstream.call.created.v2" has major version "v2"`, wantOutcome: outcomePoisoned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder("rec")
			if tt.setup != nil {
				tt.setup(rec)
			}
			pub := &capturePublisher{}
			reg := prometheus.NewRegistry()
			rt, l := testLane(t, fastConfig(), rec, pub, reg, nil)
			msg := tt.msg()
			l.process(delivery.FromMessages([]*message.Message{msg}))
			if v := verdict(msg); v != "ack" {
				t.Fatalf("verdict %q, want ack", v)
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

// TestTransientPausesTheLane: while a dependency fails, the lane reports
// itself paused (metric and readiness) and resumes once it passes.
func TestTransientPausesTheLane(t *testing.T) {
	rec := newRecorder("rec")
	rec.failN["call-0001"] = 1 << 30
	rec.transient = true
	pub := &capturePublisher{}
	rt, l := testLane(t, fastConfig(), rec, pub, prometheus.NewRegistry(), nil)
	rt.lanes = []*lane{l}
	rt.delivering.Store(true)
	done := make(chan struct{})
	msg := eventMessage(t, testEvent(1))
	go func() { defer close(done); l.process(delivery.FromMessages([]*message.Message{msg})) }()
	waitFor(t, 5*time.Second, "the lane to pause", func() bool { return testutil.ToFloat64(l.m.paused) == 1 })
	err := rt.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "plug-in rec paused") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Ready = %v while paused", err)
	}
	rec.mu.Lock()
	rec.failN["call-0001"] = 0 // the database is back
	rec.mu.Unlock()
	<-done
	if v := verdict(msg); v != "ack" {
		t.Fatalf("verdict %q, want ack", v)
	}
	if err := rt.Ready(context.Background()); err != nil || testutil.ToFloat64(l.m.paused) != 0 {
		t.Fatalf("after recovery: Ready = %v, paused = %v", err, testutil.ToFloat64(l.m.paused))
	}
	if n := len(pub.on("test." + schemas.DLQTopic)); n != 0 {
		t.Fatalf("%d messages dead-lettered for a dependency's failure", n)
	}
}

// TestRetryStopsAtShutdown: a batch in retry backoff when shutdown starts
// is nacked (delivered again next run), not sent to the DLQ, whatever its
// error class.
func TestRetryStopsAtShutdown(t *testing.T) {
	for _, transient := range []bool{false, true} {
		t.Run(fmt.Sprint("transient=", transient), func(t *testing.T) {
			rec := newRecorder("rec")
			rec.failN["call-0001"] = 1000
			rec.transient = transient
			pub := &capturePublisher{}
			cfg := fastConfig()
			cfg.MaxRetries = 1000
			cfg.RetryInitialInterval = 50 * time.Millisecond
			_, l := testLane(t, cfg, rec, pub, nil, nil)
			time.AfterFunc(150*time.Millisecond, l.stopIntake)
			start := time.Now()
			msg := eventMessage(t, testEvent(1))
			l.process(delivery.FromMessages([]*message.Message{msg}))
			if time.Since(start) > 5*time.Second {
				t.Fatal("retries did not stop promptly at shutdown")
			}
			if v := verdict(msg); v != "nack" {
				t.Fatalf("verdict %q, want nack", v)
			}
			if n := len(pub.on("test." + schemas.DLQTopic)); n != 0 {
				t.Fatalf("%d messages went to the DLQ at shutdown", n)
			}
		})
	}
}

// blunt fails every batch that holds one poisoned call key, without saying
// which item is at fault: the way a sink fails when its transaction aborts.
type blunt struct {
	poison string
	mu     sync.Mutex
	calls  int
	stored map[string]int
}

func (b *blunt) Name() string { return "blunt" }
func (b *blunt) HandleBatch(_ context.Context, batch []Delivery) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	for _, d := range batch {
		if d.Event.CallKey == b.poison {
			return errors.New("transaction aborted")
		}
	}
	for _, d := range batch {
		b.stored[d.Event.EventID]++
	}
	return nil
}

// TestPoisonInBatchIsolated: one message that fails its whole batch is
// found by splitting the batch; only it goes to the DLQ, every other
// message of the batch is stored once and acknowledged, and finding it
// costs a logarithmic number of attempts.
func TestPoisonInBatchIsolated(t *testing.T) {
	const n = 64
	sink := &blunt{poison: "call-0037", stored: map[string]int{}}
	pub := &capturePublisher{}
	cfg := fastConfig()
	_, l := testLane(t, cfg, sink, pub, nil, nil)
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = eventMessage(t, testEvent(i))
	}
	l.process(delivery.FromMessages(msgs))
	dlq := pub.on("test." + schemas.DLQTopic)
	if len(dlq) != 1 || dlq[0].UUID != testEvent(37).EventID {
		t.Fatalf("DLQ holds %d messages (want only event 37's)", len(dlq))
	}
	if !strings.Contains(dlq[0].Metadata.Get(schemas.DLQReasonMetadata), "transaction aborted") {
		t.Fatalf("DLQ reason %q", dlq[0].Metadata.Get(schemas.DLQReasonMetadata))
	}
	for i, m := range msgs {
		if v := verdict(m); v != "ack" {
			t.Fatalf("message %d: verdict %q", i, v)
		}
		if id := testEvent(i).EventID; i != 37 && sink.stored[id] != 1 {
			t.Fatalf("event %d stored %d times", i, sink.stored[id])
		}
	}
	// 1 + MaxRetries attempts of the whole batch, 2 per level of halving
	// (6 levels for 64), then the lone poison's own 1 + MaxRetries.
	if max := 2*(1+cfg.MaxRetries) + 2*6; sink.calls > max {
		t.Fatalf("isolating one poison message took %d calls, want at most %d", sink.calls, max)
	}
}

// TestItemErrorsRetryOnlyTheFailed: items a batch plug-in fails are retried
// alone; those it accepted are not handed to it again.
func TestItemErrorsRetryOnlyTheFailed(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	calls := 0
	p := &funcPlugin{name: "items", fn: func(batch []Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		errs := ItemErrors{}
		for i, d := range batch {
			seen[d.Event.CallKey]++
			if d.Event.CallKey == "call-0002" && seen["call-0002"] < 3 {
				errs[i] = errors.New("row locked")
			}
			if d.Event.CallKey == "call-0004" {
				errs[i] = Permanent(errors.New("value too long"))
			}
		}
		if len(errs) > 0 {
			return &errs
		}
		return nil
	}}
	pub := &capturePublisher{}
	_, l := testLane(t, fastConfig(), p, pub, nil, nil)
	msgs := make([]*message.Message, 6)
	for i := range msgs {
		msgs[i] = eventMessage(t, testEvent(i))
	}
	l.process(delivery.FromMessages(msgs))
	want := map[string]int{"call-0000": 1, "call-0001": 1, "call-0002": 3, "call-0003": 1, "call-0004": 1, "call-0005": 1}
	for k, n := range want {
		if seen[k] != n {
			t.Fatalf("%s handed over %d times, want %d (all: %v)", k, seen[k], n, seen)
		}
	}
	if dlq := pub.on("test." + schemas.DLQTopic); len(dlq) != 1 || dlq[0].UUID != testEvent(4).EventID {
		t.Fatalf("DLQ holds %d messages, want only event 4", len(dlq))
	}
}

// funcPlugin is a BatchHandler made of a function.
type funcPlugin struct {
	name string
	fn   func([]Delivery) error
}

func (f *funcPlugin) Name() string                                      { return f.name }
func (f *funcPlugin) HandleBatch(_ context.Context, b []Delivery) error { return f.fn(b) }

// TestDLQFailureModes: a DLQ publish that fails is retried until it
// succeeds (the message is acknowledged only then, never dropped); a
// message too large for the DLQ is recorded in the plug-in's state and the
// metric and acknowledged, so its partition does not loop on it.
func TestDLQFailureModes(t *testing.T) {
	t.Run("publish fails, then succeeds", func(t *testing.T) {
		pub := &capturePublisher{fail: func(call int) error {
			if call <= 3 {
				return &net.OpError{Op: "dial", Err: errors.New("connection refused")}
			}
			return nil
		}}
		_, l := testLane(t, fastConfig(), newRecorder("rec"), pub, nil, nil)
		msg := poisonMessages(t)["poison-not-json"].msg
		l.process(delivery.FromMessages([]*message.Message{msg}))
		if v := verdict(msg); v != "ack" || len(pub.on("test."+schemas.DLQTopic)) != 1 {
			t.Fatalf("verdict %q, DLQ %d messages; want ack after the copy is in the DLQ", v, len(pub.on("test."+schemas.DLQTopic)))
		}
	})
	t.Run("too large for the DLQ", func(t *testing.T) {
		pub := &capturePublisher{fail: func(int) error { return fmt.Errorf("publish: %w", schemas.ErrTooLarge) }}
		state := &memState{}
		_, l := testLane(t, fastConfig(), newRecorder("rec"), pub, nil, state)
		msg := poisonMessages(t)["poison-not-json"].msg
		schemas.SetPosition(msg.Metadata, schemas.Position{Topic: "test.calls.v1", Partition: 2, Offset: 77})
		start := time.Now()
		l.process(delivery.FromMessages([]*message.Message{msg}))
		if v := verdict(msg); v != "ack" {
			t.Fatalf("verdict %q, want ack", v)
		}
		if time.Since(start) > 2*time.Second || pub.calls != 1 {
			t.Fatalf("a too-large DLQ copy was tried %d times over %s: it must be tried once", pub.calls, time.Since(start))
		}
		if got := testutil.ToFloat64(l.m.undeliverable); got != 1 {
			t.Fatalf("undeliverable counter = %v", got)
		}
		list, err := Undeliverables(context.Background(), state)
		if err != nil || len(list) != 1 || list[0].Partition != "2" || list[0].Offset != "77" || list[0].Bytes != len(msg.Payload) {
			t.Fatalf("recorded %+v, %v", list, err)
		}
	})
}

// memState is a StateStore in memory.
type memState struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memState) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key], nil
}

func (s *memState) Save(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[key] = append([]byte{}, value...)
	return nil
}

// TestClassification pins which errors are transient.
func TestClassification(t *testing.T) {
	tests := []struct {
		err       error
		transient bool
	}{
		{errors.New("boom"), false},
		{Transient(errors.New("db down")), true},
		{Permanent(Transient(errors.New("both"))), false},
		{fmt.Errorf("write: %w", &net.OpError{Op: "dial", Err: errors.New("refused")}), true},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), true},
		{Permanent(errors.New("bad row")), false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := IsTransient(tt.err); got != tt.transient {
			t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.transient)
		}
	}
}
