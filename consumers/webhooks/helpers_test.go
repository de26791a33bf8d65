package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// fileStore is the runtime's embedded-mode store (consumers.FileState:
// write, fsync, rename, fsync of the directory) with a switch: freezing it
// makes every later Save fail, which is what a crash looks like to whoever
// reads the directory afterwards.
type fileStore struct {
	consumers.FileState
	frozen atomic.Bool
	saves  atomic.Int64
	loads  atomic.Int64
}

func (s *fileStore) Load(ctx context.Context, key string) ([]byte, error) {
	s.loads.Add(1)
	return s.FileState.Load(ctx, key)
}

func newFileStore(t testing.TB) *fileStore {
	return &fileStore{FileState: consumers.FileState{Dir: t.TempDir()}}
}

func (s *fileStore) Save(ctx context.Context, key string, value []byte) error {
	if s.frozen.Load() {
		return errors.New("store frozen (simulated crash)")
	}
	s.saves.Add(1)
	return s.FileState.Save(ctx, key, value)
}

// SaveAll overrides the embedded FileState's, which would bypass frozen.
func (s *fileStore) SaveAll(ctx context.Context, entries map[string][]byte) error {
	if s.frozen.Load() {
		return errors.New("store frozen (simulated crash)")
	}
	s.saves.Add(int64(len(entries)))
	return s.FileState.SaveAll(ctx, entries)
}

// dlq is a real in-process watermill publisher standing in for the bus,
// with a subscriber reading the DLQ topic back.
type dlq struct {
	pubsub *gochannel.GoChannel
	topics consumers.Topics
	mu     sync.Mutex
	msgs   []*message.Message
}

func newDLQ(t testing.TB) *dlq {
	d := &dlq{
		pubsub: gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 100000}, watermill.NopLogger{}),
		topics: consumers.NewTopics("test."),
	}
	ch, err := d.pubsub.Subscribe(context.Background(), d.topics.DLQ)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for m := range ch {
			d.mu.Lock()
			d.msgs = append(d.msgs, m)
			d.mu.Unlock()
			m.Ack()
		}
	}()
	t.Cleanup(func() { d.pubsub.Close() })
	return d
}

func (d *dlq) messages() []*message.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*message.Message(nil), d.msgs...)
}

// received is one request a listener got.
type received struct {
	header http.Header
	body   []byte
	at     time.Time
	status int
}

// listener is a real HTTP server on 127.0.0.1 whose answers the test
// scripts; it records every request.
type listener struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []received
	answer func(n int, r *http.Request, body []byte) int // n counts requests for the same webhook-id, from 1
	perID  map[string]int
}

func newListener(t testing.TB, answer func(n int, r *http.Request, body []byte) int) *listener {
	l := &listener{answer: answer, perID: map[string]int{}}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get(HeaderID)
		l.mu.Lock()
		l.perID[id]++
		n := l.perID[id]
		l.mu.Unlock()
		status := http.StatusOK
		if l.answer != nil {
			status = l.answer(n, r, body)
		}
		if status == 0 { // hang until the sender gives up
			<-r.Context().Done()
			return
		}
		l.mu.Lock()
		l.reqs = append(l.reqs, received{header: r.Header.Clone(), body: body, at: time.Now(), status: status})
		l.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *listener) requests() []received {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]received(nil), l.reqs...)
}

// successes counts 2xx answers per webhook-id.
func (l *listener) successes() map[string]int {
	out := map[string]int{}
	for _, r := range l.requests() {
		if r.status/100 == 2 {
			out[r.header.Get(HeaderID)]++
		}
	}
	return out
}

func newSecret(t testing.TB) string {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(k)
}

// testConfig is DefaultConfig with loopback allowed (the listeners are on
// 127.0.0.1) and a millisecond retry schedule.
func testConfig(eps ...EndpointConfig) Config {
	c := DefaultConfig()
	c.Endpoints = eps
	c.AllowLoopback = true
	c.RetrySchedule = []time.Duration{5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}
	c.Timeout = 5 * time.Second
	c.FlushInterval = time.Millisecond
	return c
}

func testEvent(i int, callKey string, rev int) schemas.CallEvent {
	created := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	status := []string{schemas.StatusCompleted, schemas.StatusMissed, schemas.StatusFailed}[i%3]
	return schemas.CallEvent{
		EventID: fmt.Sprintf("00000000-0000-5000-8000-%012d", i), Org: "acme", CallKey: callKey, Revision: rev,
		SourceNumber: "+15550001", DestinationNumber: "+15550002", CallType: schemas.CallInbound,
		CallStatus: status, CreationTime: created, EndReason: "hangup", ObservedAt: created.Add(time.Minute),
		Raw: json.RawMessage(`{"id":null}`),
	}
}

// delivery wraps an event the way the runtime hands it over: decoded, with
// the original payload in the message.
func delivery(t testing.TB, ev schemas.CallEvent) consumers.Delivery {
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return consumers.NewDelivery(ev, message.NewMessage(ev.EventID, b))
}

// started is a plug-in running in the background.
type started struct {
	*Plugin
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned, with runErr set
	runErr error
}

// stop cancels Run and waits for it.
func (s *started) stop(t testing.TB) {
	s.cancel()
	select {
	case <-s.done:
		if s.runErr != nil {
			t.Errorf("Run: %v", s.runErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func start(t testing.TB, cfg Config, store consumers.StateStore, d *dlq, tweak ...func(*Plugin)) *started {
	t.Helper()
	p, err := New(cfg, consumers.Deps{State: store, Publisher: d.pubsub, Topics: d.topics})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range tweak {
		f(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{Plugin: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		s.runErr = p.Run(ctx)
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
		p.Close()
	})
	return s
}

func handle(t testing.TB, p *Plugin, ev schemas.CallEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Handle(ctx, delivery(t, ev)); err != nil {
		t.Fatalf("Handle %s: %v", ev.EventID, err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
