package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/callstream/callstream/schemas"
)

// testEvent returns a valid call event numbered i.
func testEvent(i int) schemas.CallEvent {
	key := fmt.Sprintf("call-%04d", i)
	created := time.Date(2026, 2, 7, 5, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return schemas.CallEvent{
		EventID:           uuid.NewSHA1(uuid.NameSpaceOID, []byte(key)).String(),
		Org:               "acme",
		CallKey:           key,
		Revision:          1,
		CallID:            &key,
		SourceNumber:      "+911234567890",
		DestinationNumber: "+919876543210",
		CallType:          schemas.CallInbound,
		CallStatus:        schemas.StatusCompleted,
		CreationTime:      created,
		EndReason:         "caller_hangup",
		ObservedAt:        created.Add(time.Minute),
		Raw:               json.RawMessage(`{"id":"` + key + `"}`),
	}
}

// eventMessage wraps an event as the producer publishes it.
func eventMessage(t testing.TB, e schemas.CallEvent) *message.Message {
	t.Helper()
	data, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	msg := message.NewMessage(e.EventID, data)
	msg.Metadata.Set(schemas.HeaderType, e.Type())
	msg.Metadata.Set(schemas.HeaderSpecVersion, schemas.SpecVersion)
	msg.Metadata.Set(schemas.HeaderID, e.EventID)
	msg.Metadata.Set(schemas.KeyMetadata, e.CallKey)
	return msg
}

// poisonMessages returns the three kinds of poison of the issue, each with
// the substring its DLQ reason must contain.
func poisonMessages(t testing.TB) map[string]struct {
	msg    *message.Message
	reason string
} {
	notJSON := message.NewMessage("poison-not-json", []byte("this is not json {"))
	notJSON.Metadata.Set(schemas.HeaderType, schemas.TypeCallCreated)

	bad := testEvent(9001)
	badMsg := eventMessage(t, bad)
	var m map[string]any
	_ = json.Unmarshal(badMsg.Payload, &m)
	m["call_status"] = "exploded"
	badMsg.Payload, _ = json.Marshal(m)
	badMsg.UUID = "poison-schema"

	v2 := eventMessage(t, testEvent(9002))
	v2.UUID = "poison-v2"
	v2.Metadata.Set(schemas.HeaderType, "callstream.call.created.v2")

	return map[string]struct {
		msg    *message.Message
		reason string
	}{
		"poison-not-json": {notJSON, ErrNotJSON.Error()},
		"poison-schema":   {badMsg, ErrSchema.Error()},
		"poison-v2":       {v2, ErrUnknownVersion.Error()},
	}
}

// recorder is the test plug-in: a Handler that records the event ids it
// accepted, and can be told to fail or panic for given call keys.
type recorder struct {
	name string

	mu       sync.Mutex
	seen     map[string]int // event id -> times accepted
	attempts map[string]int // call key -> calls
	failN    map[string]int // call key -> fail this many attempts
	panicKey string
	permKeys []string // call keys refused for good
	// transient makes the failures of failN a dependency's (a refused
	// connection) rather than unclassified errors.
	transient bool
	delay     time.Duration
	closed    bool
}

func newRecorder(name string) *recorder {
	return &recorder{name: name, seen: map[string]int{}, attempts: map[string]int{}, failN: map[string]int{}}
}

func (r *recorder) Name() string { return r.name }

func (r *recorder) Handle(ctx context.Context, d Delivery) error {
	r.mu.Lock()
	r.attempts[d.Event.CallKey]++
	n := r.attempts[d.Event.CallKey]
	fail := n <= r.failN[d.Event.CallKey]
	doPanic := d.Event.CallKey == r.panicKey
	perm := slices.Contains(r.permKeys, d.Event.CallKey)
	delay, transient := r.delay, r.transient
	r.mu.Unlock()
	if doPanic {
		panic("boom on " + d.Event.CallKey)
	}
	if perm {
		return Permanent(errors.New("refused for good"))
	}
	if fail && transient {
		return Transient(fmt.Errorf("attempt %d: %w", n, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}))
	}
	if fail {
		return fmt.Errorf("transient failure %d", n)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	r.seen[d.Event.EventID]++
	r.mu.Unlock()
	return nil
}

func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

func (r *recorder) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.seen))
	for k, v := range r.seen {
		out[k] = v
	}
	return out
}

func (r *recorder) attemptsOf(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[key]
}

// batchRecorder is a BatchHandler test plug-in.
type batchRecorder struct {
	name   string
	tuning Tuning
	delay  time.Duration
	// started is signalled (non-blocking) when a batch begins.
	started chan struct{}

	mu      sync.Mutex
	seen    map[string]int
	batches []int
}

func newBatchRecorder(name string, tuning Tuning) *batchRecorder {
	return &batchRecorder{name: name, tuning: tuning, seen: map[string]int{}, started: make(chan struct{}, 1)}
}

func (b *batchRecorder) Name() string   { return b.name }
func (b *batchRecorder) Tuning() Tuning { return b.tuning }

func (b *batchRecorder) HandleBatch(ctx context.Context, batch []Delivery) error {
	select {
	case b.started <- struct{}{}:
	default:
	}
	if b.delay > 0 {
		// A sink's transaction: it completes even when shutdown begins,
		// since the runtime's context outlives the stop signal.
		select {
		case <-time.After(b.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batches = append(b.batches, len(batch))
	for _, d := range batch {
		b.seen[d.Event.EventID]++
	}
	return nil
}

func (b *batchRecorder) snapshot() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int, len(b.seen))
	for k, v := range b.seen {
		out[k] = v
	}
	return out
}

func factoryOf(p Plugin) Factory {
	return Factory{Name: p.Name(), New: func(Deps) (Plugin, error) { return p, nil }}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fastConfig retries quickly so tests stay short.
func fastConfig() Config {
	c := DefaultConfig()
	c.MaxRetries = 3
	c.RetryInitialInterval = 5 * time.Millisecond
	c.RetryMaxInterval = 20 * time.Millisecond
	c.BatchWait = 50 * time.Millisecond
	c.CloseTimeout = 10 * time.Second
	return c
}
