package alerting

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

const testSecret = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM=" // base64("secret-key-for-tests")

// receiver is a real HTTP listener recording notifications.
type receiver struct {
	srv   *httptest.Server
	mu    sync.Mutex
	got   []received
	fails int // answer 503 to this many requests first
	code  int // when set, answer this status always
}

type received struct {
	path   string
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got = append(r.got, received{path: req.URL.Path, header: req.Header.Clone(), body: body})
		switch {
		case r.code != 0:
			w.WriteHeader(r.code)
		case r.fails > 0:
			r.fails--
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// byKind counts the notifications a webhook receiver accepted, by kind.
func (r *receiver) byKind() map[string]int {
	out := map[string]int{}
	for _, q := range r.requests() {
		out[q.header.Get(HeaderNotificationKind)]++
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testConfig(webhookURL string) Config {
	cfg := replayConfig()
	cfg.Notifiers.Log.Enabled = false
	cfg.Notifiers.RetryInitial = 10 * time.Millisecond
	cfg.Notifiers.RetryMax = 50 * time.Millisecond
	cfg.Notifiers.RetryMaxElapsed = 5 * time.Second
	cfg.Notifiers.Timeout = 2 * time.Second
	if webhookURL != "" {
		cfg.Notifiers.Webhook = WebhookConfig{URL: webhookURL, Secret: testSecret}
	}
	return cfg
}

// running is a plug-in with its Run loop going.
type running struct {
	*Plugin
	pub  *memPublisher
	stop func()
}

func start(t *testing.T, cfg Config, state consumers.StateStore, reg prometheus.Registerer) *running {
	t.Helper()
	pub := &memPublisher{}
	p, err := New(cfg, consumers.Deps{Publisher: pub, Topics: consumers.NewTopics("test."), State: state, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	r := &running{Plugin: p, pub: pub}
	r.stop = func() {
		cancel()
		<-done
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	return r
}

// outboxEmpty reports whether every notice was confirmed by every
// destination.
func (p *Plugin) outboxEmpty() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applyConfirmations()
	return len(p.outbox) == 0
}

func TestReplayGivesIdenticalAlerts(t *testing.T) {
	stream := normal(4*time.Hour,
		incident{org: "acme", from: 90 * time.Minute, to: 100 * time.Minute, status: schemas.StatusMissed, share: 0.8},
		incident{org: "globex", from: 2 * time.Hour, to: 2*time.Hour + 4*time.Minute, status: schemas.StatusFailed, share: 0.5},
		incident{org: "initech", from: 3 * time.Hour, to: 3*time.Hour + 2*time.Minute, status: schemas.StatusFailed, share: 0.9},
	).generate()
	run := func() []*message.Message {
		p, err := New(testConfig(""), consumers.Deps{Publisher: &memPublisher{}, Topics: consumers.NewTopics("test."),
			State: &fileState{dir: t.TempDir()}})
		if err != nil {
			t.Fatal(err)
		}
		feed(t, p, stream)
		return p.deps.Publisher.(*memPublisher).msgs
	}
	first, second := run(), run()
	if len(first) < 6 {
		t.Fatalf("the stream produced %d alert events, want at least 6 (three firings, three resolutions)", len(first))
	}
	if len(first) != len(second) {
		t.Fatalf("replay produced %d alert events, first run %d", len(second), len(first))
	}
	for i := range first {
		a, b := first[i], second[i]
		if a.UUID != b.UUID || string(a.Payload) != string(b.Payload) || !reflect.DeepEqual(a.Metadata, b.Metadata) {
			t.Fatalf("alert event %d differs:\n%s %v\n%s %v", i, a.Payload, a.Metadata, b.Payload, b.Metadata)
		}
	}
	pub := &memPublisher{msgs: first}
	alerts := pub.alerts(t)
	if alerts[0].State != schemas.AlertFiring || alerts[0].Rule != "missed-call-spike" || alerts[0].Org != "acme" || len(alerts[0].SampleEventIDs) == 0 {
		t.Fatalf("first alert = %+v", alerts[0])
	}
}

// spikeStream is three hours of traffic with a missed-call spike at acme
// from 90 to 96 minutes, split where the alert fires: head ends just after
// the firing, tail is the rest.
func spikeStream(t *testing.T) (all []schemas.CallEvent, fireAt int) {
	t.Helper()
	all = normal(3*time.Hour, incident{org: "acme", from: 90 * time.Minute, to: 96 * time.Minute, status: schemas.StatusMissed, share: 0.7}).generate()
	e := newEngine(replayConfig())
	for i := range all {
		e.Observe("", &all[i], wall)
		if ns := e.TakeNotices(); len(ns) > 0 {
			if ns[0].Kind != KindFiring {
				t.Fatalf("first notice is %s", ns[0].Kind)
			}
			return all, i + 1
		}
	}
	t.Fatal("the spike never fired")
	return nil, 0
}

func TestRestartWhileFiringSendsNoSecondFiring(t *testing.T) {
	all, fireAt := spikeStream(t)
	recv := newReceiver(t)
	state := &fileState{dir: t.TempDir()}
	cfg := testConfig(recv.srv.URL)

	a := start(t, cfg, state, nil)
	feed(t, a.Plugin, all[:fireAt+20])
	waitFor(t, "the firing webhook", func() bool { return recv.byKind()[KindFiring] == 1 })
	// The receiver counts a request before the notifier has read the
	// answer: stop only once the delivery is confirmed, or the restart
	// rightly sends it again (at least once).
	waitFor(t, "the firing confirmed", a.outboxEmpty)
	a.stop()
	firing := a.pub.alerts(t)
	if len(firing) != 1 || firing[0].State != schemas.AlertFiring {
		t.Fatalf("before the restart: %+v", firing)
	}

	// The restarted plug-in sees the last events again (Kafka redelivers
	// what was not committed) and then the rest of the stream.
	b := start(t, cfg, state, nil)
	feed(t, b.Plugin, all[fireAt-30:])
	waitFor(t, "the resolved webhook", func() bool { return recv.byKind()[KindResolved] == 1 })
	waitFor(t, "the resolution confirmed", b.outboxEmpty)
	b.stop()
	after := b.pub.alerts(t)
	if len(after) != 1 || after[0].State != schemas.AlertResolved || after[0].AlertID != firing[0].AlertID {
		t.Fatalf("after the restart the topic got %+v, want only the resolution of %s", after, firing[0].AlertID)
	}
	if got := recv.byKind(); got[KindFiring] != 1 || got[KindResolved] != 1 || len(recv.requests()) != 2 {
		t.Fatalf("webhook received %v, want one firing and one resolved", got)
	}

	// A restart after the resolution, fed the tail again and more calls,
	// sends nothing stale.
	c := start(t, cfg, state, nil)
	more := normal(time.Hour, incident{})
	more.start, more.seed = t0.Add(3*time.Hour), 9
	feed(t, c.Plugin, append(append([]schemas.CallEvent{}, all[len(all)-200:]...), more.generate()...))
	time.Sleep(100 * time.Millisecond)
	c.stop()
	if n := len(c.pub.alerts(t)); n != 0 || len(recv.requests()) != 2 {
		t.Fatalf("a restart after resolution published %d alerts and sent %d webhooks in all", n, len(recv.requests()))
	}
}

func TestStateIsSavedBeforeAnythingIsSent(t *testing.T) {
	all, fireAt := spikeStream(t)
	state := &fileState{dir: t.TempDir()}
	pub := &memPublisher{}
	p, err := New(testConfig(""), consumers.Deps{Publisher: pub, Topics: consumers.NewTopics("test."), State: state})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, p, all[:fireAt-1])
	state.fail = true
	if err := p.Handle(context.Background(), consumers.Delivery{Event: all[fireAt-1]}); err == nil {
		t.Fatal("Handle succeeded although the state could not be saved")
	}
	if len(pub.msgs) != 0 {
		t.Fatal("the firing was published before it was saved")
	}
	// The runtime redelivers: now the state saves, and the firing goes out
	// once; the redelivered call is not counted twice.
	state.fail = false
	pub.fail = true
	if err := p.Handle(context.Background(), consumers.Delivery{Event: all[fireAt-1]}); err != nil {
		t.Fatalf("Handle failed although the firing was saved: %v", err)
	}
	if len(pub.msgs) != 0 {
		t.Fatal("published while the broker was down")
	}
	// The process dies here: the firing is saved in the outbox, unpublished.
	q, err := New(testConfig(""), consumers.Deps{Publisher: pub, Topics: consumers.NewTopics("test."), State: state})
	if err != nil {
		t.Fatal(err)
	}
	pub.fail = false
	feed(t, q, all[fireAt-1:fireAt+100])
	got := pub.alerts(t)
	if len(got) != 1 || got[0].State != schemas.AlertFiring {
		t.Fatalf("published %+v, want exactly the one firing", got)
	}
}

func TestLateEventsAreCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, err := New(testConfig(""), consumers.Deps{Registerer: reg, Topics: consumers.NewTopics("test.")})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, p, []schemas.CallEvent{
		call(1, "o", 10*time.Minute, schemas.StatusCompleted),
		call(2, "o", 10*time.Minute-p.cfg.Grace+time.Second, schemas.StatusCompleted), // within grace
		call(3, "o", 5*time.Minute, schemas.StatusMissed),                             // beyond it
		call(3, "o", 5*time.Minute, schemas.StatusMissed),
	})
	if got := testutil.ToFloat64(p.metrics.late); got != 2 {
		t.Fatalf("late events = %v, want 2", got)
	}
	if got := testutil.ToFloat64(p.metrics.counted); got != 2 {
		t.Fatalf("counted events = %v, want 2", got)
	}
}

func TestWebhookNotifierSignsAndRetries(t *testing.T) {
	recv := newReceiver(t)
	recv.fails = 2
	all, fireAt := spikeStream(t)
	r := start(t, testConfig(recv.srv.URL), nil, nil)
	defer r.stop()
	feed(t, r.Plugin, all[:fireAt])
	waitFor(t, "3 attempts", func() bool { return len(recv.requests()) == 3 })
	reqs := recv.requests()
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(testSecret, "whsec_"))
	for _, q := range reqs {
		if err := v.ValidateAlert(q.body); err != nil {
			t.Fatalf("webhook body: %v", err)
		}
		id, ts := q.header.Get(HeaderWebhookID), q.header.Get(HeaderWebhookTimestamp)
		var sec int64
		for _, c := range ts {
			sec = sec*10 + int64(c-'0')
		}
		if want := Sign(key, id, sec, q.body); q.header.Get(HeaderWebhookSignature) != want || id == "" {
			t.Fatalf("signature %q, want %q", q.header.Get(HeaderWebhookSignature), want)
		}
		if q.header.Get(HeaderWebhookID) != reqs[0].header.Get(HeaderWebhookID) {
			t.Fatal("a retry changed the webhook-id")
		}
	}
	// A forged body does not verify.
	if Sign(key, reqs[0].header.Get(HeaderWebhookID), 1, reqs[0].body) == Sign(key, reqs[0].header.Get(HeaderWebhookID), 1, append(reqs[0].body, ' ')) {
		t.Fatal("the signature does not cover the body")
	}
}

func TestHandleReadsKafkaPartitions(t *testing.T) {
	p, err := New(testConfig(""), consumers.Deps{Topics: consumers.NewTopics("test.")})
	if err != nil {
		t.Fatal(err)
	}
	handle := func(partition string, ev schemas.CallEvent) {
		n, _ := strconv.Atoi(partition)
		d := consumers.Delivery{Event: ev, Position: schemas.Position{Partition: int32(n)}, HasPosition: true}
		if err := p.Handle(context.Background(), d); err != nil {
			t.Fatal(err)
		}
	}
	handle("0", call(1, "o", 0, schemas.StatusCompleted))
	handle("1", call(2, "o", 0, schemas.StatusCompleted))
	handle("0", call(3, "o", time.Hour, schemas.StatusCompleted))
	if wm := p.eng.Watermark(); wm.After(t0) {
		t.Fatalf("watermark %s ran past partition 1", wm)
	}
	handle("1", call(4, "o", 30*time.Minute, schemas.StatusCompleted))
	if wm := p.eng.Watermark(); wm.Before(t0.Add(29*time.Minute)) || wm.After(t0.Add(30*time.Minute)) {
		t.Fatalf("watermark %s, want partition 1's 30m less grace", wm)
	}
}

// TestLogEvery: the first event is logged, the ones within logInterval
// are counted into the next line, which comes once the interval is over.
func TestLogEvery(t *testing.T) {
	var l logEvery
	for _, tc := range []struct {
		at    time.Duration
		count int
		ok    bool
	}{
		{0, 1, true},
		{time.Second, 0, false},
		{logInterval - time.Nanosecond, 0, false},
		{logInterval, 3, true},
		{logInterval + time.Second, 0, false},
		{3 * logInterval, 2, true},
	} {
		if count, ok := l.note(t0.Add(tc.at)); count != tc.count || ok != tc.ok {
			t.Errorf("event at %s: (%d, %v), want (%d, %v)", tc.at, count, ok, tc.count, tc.ok)
		}
	}
}
