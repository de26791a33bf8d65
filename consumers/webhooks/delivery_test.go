package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// Every delivery carries the Standard Webhooks headers; the signature
// verifies with the reference algorithm under each active secret (a
// rotation) and with Verify; the body is the event JSON as received.
func TestDeliveryIsSigned(t *testing.T) {
	oldSecret, newSecret := newSecret(t), newSecret(t)
	l := newListener(t, nil)
	cfg := testConfig(EndpointConfig{
		Name: "a", URL: l.srv.URL + "/hook", Secrets: Secrets{oldSecret, newSecret},
		Headers: map[string]string{"X-Team": "ops"},
	})
	p := start(t, cfg, newFileStore(t), newDLQ(t))
	ev := testEvent(1, "call-1", 1)
	d := delivery(t, ev)
	before := time.Now().Unix()
	if err := p.Handle(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the delivery", func() bool { return len(l.requests()) == 1 })
	r := l.requests()[0]
	if got := r.header.Get(HeaderID); got != ev.EventID {
		t.Fatalf("webhook-id = %q, want the event_id %q", got, ev.EventID)
	}
	ts, err := strconv.ParseInt(r.header.Get(HeaderTimestamp), 10, 64)
	if err != nil || ts < before || ts > time.Now().Unix() {
		t.Fatalf("webhook-timestamp %q is not the attempt's Unix time", r.header.Get(HeaderTimestamp))
	}
	if !bytes.Equal(r.body, d.Payload) {
		t.Fatalf("body = %s, want the event JSON %s", r.body, d.Payload)
	}
	var back schemas.CallEvent
	if err := json.Unmarshal(r.body, &back); err != nil || back.EventID != ev.EventID {
		t.Fatalf("body does not decode to the event: %v", err)
	}
	want := referenceSign(t, oldSecret, ev.EventID, ts, r.body) + " " + referenceSign(t, newSecret, ev.EventID, ts, r.body)
	if got := r.header.Get(HeaderSignature); got != want {
		t.Fatalf("webhook-signature = %q, want %q", got, want)
	}
	for _, s := range []string{oldSecret, newSecret} {
		if err := Verify(s, ev.EventID, r.header.Get(HeaderTimestamp), r.body, r.header.Get(HeaderSignature), time.Now(), 5*time.Minute); err != nil {
			t.Fatalf("Verify with one of the rotation's secrets: %v", err)
		}
	}
	if r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Team") != "ops" {
		t.Fatalf("headers %v lack content type or the custom header", r.header)
	}
}

// A listener that fails three times then succeeds gets the event once as a
// success, with the same webhook-id on every attempt and a valid signature
// on each.
func TestRetryUntilSuccessDeliversOnce(t *testing.T) {
	secret := newSecret(t)
	l := newListener(t, func(n int, _ *http.Request, _ []byte) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{secret}})
	cfg.RetrySchedule = []time.Duration{5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond}
	d := newDLQ(t)
	p := start(t, cfg, newFileStore(t), d)
	ev := testEvent(7, "call-7", 1)
	handle(t, p.Plugin, ev)
	eventually(t, 5*time.Second, "the fourth attempt", func() bool { return len(l.requests()) >= 4 })
	time.Sleep(100 * time.Millisecond) // room for a wrong extra attempt
	reqs := l.requests()
	if len(reqs) != 4 {
		t.Fatalf("listener saw %d attempts, want 4", len(reqs))
	}
	if got := l.successes()[ev.EventID]; got != 1 {
		t.Fatalf("successes = %d, want exactly 1", got)
	}
	for i, r := range reqs {
		if r.header.Get(HeaderID) != ev.EventID {
			t.Fatalf("attempt %d: webhook-id %q, want %q on every retry", i+1, r.header.Get(HeaderID), ev.EventID)
		}
		if err := Verify(secret, ev.EventID, r.header.Get(HeaderTimestamp), r.body, r.header.Get(HeaderSignature), time.Now(), time.Minute); err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	if n := len(d.messages()); n != 0 {
		t.Fatalf("%d DLQ messages for a delivered event", n)
	}
}

// An endpoint that never succeeds gets 1 + len(schedule) attempts, then the
// event goes to the DLQ with the last status and error and the event JSON.
func TestExhaustedDeliveryGoesToDLQ(t *testing.T) {
	l := newListener(t, func(int, *http.Request, []byte) int { return http.StatusBadGateway })
	cfg := testConfig(EndpointConfig{Name: "down", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
	d := newDLQ(t)
	p := start(t, cfg, newFileStore(t), d)
	ev := testEvent(3, "call-3", 1)
	dl := delivery(t, ev)
	dl.Position, dl.HasPosition = schemas.Position{Topic: d.topics.Calls, Partition: 2, Offset: 4711}, true
	if err := p.Handle(context.Background(), dl); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the DLQ message", func() bool { return len(d.messages()) == 1 })
	if n := len(l.requests()); n != 1+len(cfg.RetrySchedule) {
		t.Fatalf("%d attempts, want %d", n, 1+len(cfg.RetrySchedule))
	}
	m := d.messages()[0]
	reason := m.Metadata.Get(schemas.DLQReasonMetadata)
	for _, want := range []string{"exhausted", "last status 502", "status 502"} {
		if !contains(reason, want) {
			t.Fatalf("reason %q lacks %q", reason, want)
		}
	}
	want := map[string]string{
		schemas.DLQHandlerMetadata:   "webhooks",
		schemas.DLQEndpointMetadata:  "down",
		schemas.DLQTopicMetadata:     d.topics.Calls,
		schemas.DLQPartitionMetadata: "2",
		schemas.DLQOffsetMetadata:    "4711",
		schemas.DLQOrgMetadata:       ev.Org,
		schemas.KeyMetadata:          ev.CallKey,
	}
	for k, v := range want {
		if got := m.Metadata.Get(k); got != v {
			t.Errorf("DLQ metadata %s = %q, want %q (all: %v)", k, got, v, m.Metadata)
		}
	}
	if !bytes.Equal(m.Payload, dl.Payload) {
		t.Fatalf("DLQ payload is not the event JSON")
	}
}

// Retry-After after a 429 or a 503 delays the retry by at least that long;
// after other statuses it means nothing (RFC 9110) and the schedule decides.
func TestRetryAfterIsHonoured(t *testing.T) {
	for _, tt := range []struct {
		status  int
		honored bool
	}{{http.StatusTooManyRequests, true}, {http.StatusServiceUnavailable, true}, {http.StatusInternalServerError, false}} {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			l := newListener(t, func(n int, _ *http.Request, _ []byte) int {
				if n == 1 {
					return tt.status
				}
				return http.StatusOK
			})
			l.srv.Config.Handler = retryAfter(l.srv.Config.Handler, "1")
			cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
			p := start(t, cfg, newFileStore(t), newDLQ(t))
			handle(t, p.Plugin, testEvent(1, "c", 1))
			eventually(t, 5*time.Second, "the retry", func() bool { return len(l.requests()) == 2 })
			reqs := l.requests()
			gap := reqs[1].at.Sub(reqs[0].at)
			if tt.honored && gap < 900*time.Millisecond {
				t.Fatalf("retry came %s after a %d with Retry-After: 1", gap, tt.status)
			}
			if !tt.honored && gap >= 900*time.Millisecond {
				t.Fatalf("retry waited %s after a %d: Retry-After was honored where it means nothing", gap, tt.status)
			}
		})
	}
}

func retryAfter(h http.Handler, v string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", v)
		h.ServeHTTP(w, r)
	})
}

// 410 disables the endpoint: the event and later ones go to the DLQ for
// replay and the endpoint is not called again, even after a restart.
func TestGoneDisablesEndpoint(t *testing.T) {
	l := newListener(t, func(int, *http.Request, []byte) int { return http.StatusGone })
	cfg := testConfig(EndpointConfig{Name: "gone", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
	d := newDLQ(t)
	store := newFileStore(t)
	p := start(t, cfg, store, d)
	handle(t, p.Plugin, testEvent(1, "c1", 1))
	eventually(t, 5*time.Second, "the first DLQ message", func() bool { return len(d.messages()) == 1 })
	if r := d.messages()[0].Metadata.Get(schemas.DLQReasonMetadata); !contains(r, "410") {
		t.Fatalf("reason %q does not mention 410", r)
	}
	handle(t, p.Plugin, testEvent(2, "c2", 1))
	eventually(t, 5*time.Second, "the second DLQ message", func() bool { return len(d.messages()) == 2 })
	if r := d.messages()[1].Metadata.Get(schemas.DLQReasonMetadata); !contains(r, "disabled") {
		t.Fatalf("reason %q does not say the endpoint is disabled", r)
	}
	p.stop(t)

	p2 := start(t, cfg, store, d)
	handle(t, p2.Plugin, testEvent(3, "c3", 1))
	eventually(t, 5*time.Second, "the third DLQ message", func() bool { return len(d.messages()) == 3 })
	if n := len(l.requests()); n != 1 {
		t.Fatalf("a disabled endpoint got %d requests, want only the one that answered 410", n)
	}
}

// webhook-delivery: abort-message stops retries for that message only.
func TestAbortMessageStopsRetries(t *testing.T) {
	l := newListener(t, func(n int, r *http.Request, _ []byte) int {
		if r.Header.Get(HeaderID) == testEvent(1, "", 1).EventID {
			return http.StatusUnprocessableEntity
		}
		return http.StatusOK
	})
	l.srv.Config.Handler = abortFor(l.srv.Config.Handler, testEvent(1, "", 1).EventID)
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
	d := newDLQ(t)
	p := start(t, cfg, newFileStore(t), d)
	handle(t, p.Plugin, testEvent(1, "c1", 1))
	handle(t, p.Plugin, testEvent(2, "c2", 1))
	eventually(t, 5*time.Second, "the DLQ message", func() bool { return len(d.messages()) == 1 })
	eventually(t, 5*time.Second, "the other event", func() bool { return len(l.successes()) == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := len(l.requests()); n != 2 {
		t.Fatalf("%d requests, want 2: the aborted message must not be retried", n)
	}
	if r := d.messages()[0].Metadata.Get(schemas.DLQReasonMetadata); !contains(r, "abort") {
		t.Fatalf("reason %q", r)
	}
}

func abortFor(h http.Handler, id string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderID) == id {
			w.Header().Set(HeaderDelivery, AbortMessage)
		}
		h.ServeHTTP(w, r)
	})
}

// Revisions of one call reach an endpoint in order even when the first one
// needs retries; another call is not held up meanwhile.
func TestPerCallOrdering(t *testing.T) {
	var mu sync.Mutex
	var order []string
	first := testEvent(1, "A", 1).EventID
	l := newListener(t, func(n int, r *http.Request, body []byte) int {
		var ev schemas.CallEvent
		_ = json.Unmarshal(body, &ev)
		if ev.EventID == first && n <= 2 {
			return http.StatusServiceUnavailable
		}
		mu.Lock()
		order = append(order, ev.CallKey+strconv.Itoa(ev.Revision))
		mu.Unlock()
		return http.StatusOK
	})
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, Concurrency: 4})
	cfg.RetrySchedule = []time.Duration{50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}
	cfg.RetryJitter = 0
	p := start(t, cfg, newFileStore(t), newDLQ(t))
	handle(t, p.Plugin, testEvent(1, "A", 1))
	handle(t, p.Plugin, testEvent(2, "A", 2))
	handle(t, p.Plugin, testEvent(3, "B", 1))
	handle(t, p.Plugin, testEvent(4, "A", 3))
	eventually(t, 5*time.Second, "four successes", func() bool { return len(l.successes()) == 4 })
	mu.Lock()
	defer mu.Unlock()
	var a []string
	for _, o := range order {
		if o[0] == 'A' {
			a = append(a, o)
		}
	}
	if len(a) != 3 || a[0] != "A1" || a[1] != "A2" || a[2] != "A3" {
		t.Fatalf("call A arrived as %v, want [A1 A2 A3]", a)
	}
	if order[0] != "B1" {
		t.Fatalf("order %v: call B should not wait behind call A's retries", order)
	}
}

// After breaker_failures consecutive failures the breaker opens: no attempt
// for breaker_cooldown, then a single probe.
func TestBreakerOpensThenProbes(t *testing.T) {
	l := newListener(t, func(int, *http.Request, []byte) int { return http.StatusInternalServerError })
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, Concurrency: 1})
	cfg.RetrySchedule = make([]time.Duration, 20)
	cfg.BreakerFailures = 3
	cfg.BreakerCooldown = 300 * time.Millisecond
	p := start(t, cfg, newFileStore(t), newDLQ(t))
	for i := range 5 {
		handle(t, p.Plugin, testEvent(i, "c"+strconv.Itoa(i), 1))
	}
	eventually(t, 5*time.Second, "the first probe", func() bool { return len(l.requests()) >= 4 })
	reqs := l.requests()
	if gap := reqs[3].at.Sub(reqs[2].at); gap < cfg.BreakerCooldown-10*time.Millisecond {
		t.Fatalf("attempt 4 came %s after the third failure; the open breaker should hold it for %s", gap, cfg.BreakerCooldown)
	}
	eventually(t, 5*time.Second, "the second probe", func() bool { return len(l.requests()) >= 5 })
	reqs = l.requests()
	if gap := reqs[4].at.Sub(reqs[3].at); gap < cfg.BreakerCooldown-10*time.Millisecond {
		t.Fatalf("a failed probe must reopen the breaker; next attempt came after %s", gap)
	}
}

// An endpoint failing for longer than disable_after is disabled and its
// queued events go to the DLQ for replay.
func TestDisableAfterFailingTooLong(t *testing.T) {
	l := newListener(t, func(int, *http.Request, []byte) int { return http.StatusInternalServerError })
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, Concurrency: 1})
	cfg.RetrySchedule = []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, time.Hour}
	cfg.DisableAfter = 30 * time.Millisecond
	d := newDLQ(t)
	p := start(t, cfg, newFileStore(t), d)
	before := time.Now().Truncate(time.Second)
	for i := range 3 {
		handle(t, p.Plugin, testEvent(i, "c"+strconv.Itoa(i), 1))
	}
	eventually(t, 5*time.Second, "all three in the DLQ", func() bool { return len(d.messages()) == 3 })
	for _, m := range d.messages() {
		if r := m.Metadata.Get(schemas.DLQReasonMetadata); !contains(r, "disabled") {
			t.Fatalf("reason %q", r)
		}
	}
	// The endpoint's reason says since when it failed: the first failure,
	// not a time to come.
	ep := p.endpoints[0]
	ep.mu.Lock()
	reason := ep.reason
	ep.mu.Unlock()
	since, ok := strings.CutPrefix(reason, "failing since ")
	at, err := time.Parse(time.RFC3339, strings.TrimSuffix(strings.Fields(since)[0], ","))
	if !ok || err != nil || at.Before(before) || at.After(time.Now()) {
		t.Fatalf("disabled reason %q: want \"failing since <the first failure>\"", reason)
	}
}

// An event handed over twice (a redelivery from Kafka) is queued once.
func TestDuplicateEventQueuedOnce(t *testing.T) {
	release := make(chan struct{})
	l := newListener(t, func(int, *http.Request, []byte) int { <-release; return http.StatusOK })
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
	p := start(t, cfg, newFileStore(t), newDLQ(t))
	ev := testEvent(1, "c1", 1)
	handle(t, p.Plugin, ev)
	handle(t, p.Plugin, ev)
	close(release)
	eventually(t, 5*time.Second, "the delivery", func() bool { return len(l.requests()) == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := len(l.requests()); n != 1 {
		t.Fatalf("%d deliveries of one event handled twice", n)
	}
}

// rate_limit spaces deliveries to one endpoint.
func TestRateLimitSpacesDeliveries(t *testing.T) {
	l := newListener(t, nil)
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, RateLimit: 20, Concurrency: 4})
	p := start(t, cfg, newFileStore(t), newDLQ(t))
	for i := range 6 {
		handle(t, p.Plugin, testEvent(i, "c"+strconv.Itoa(i), 1))
	}
	eventually(t, 5*time.Second, "six deliveries", func() bool { return len(l.requests()) == 6 })
	reqs := l.requests()
	if span := reqs[5].at.Sub(reqs[0].at); span < 240*time.Millisecond {
		t.Fatalf("6 deliveries at 20/s took %s, want at least 250ms", span)
	}
}

// failingPublisher fails its first n publishes, like a broker that is down.
type failingPublisher struct {
	message.Publisher
	n atomic.Int32
}

func (f *failingPublisher) Publish(topic string, msgs ...*message.Message) error {
	if f.n.Add(-1) >= 0 {
		return errors.New("broker unavailable")
	}
	return f.Publisher.Publish(topic, msgs...)
}

// When the DLQ cannot be published to, the exhausted delivery stays queued
// (and durable) and is handed over once the DLQ is back: nothing is lost.
func TestDLQPublishFailureKeepsDelivery(t *testing.T) {
	l := newListener(t, func(int, *http.Request, []byte) int { return http.StatusInternalServerError })
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
	cfg.RetrySchedule = nil
	d := newDLQ(t)
	fp := &failingPublisher{Publisher: d.pubsub}
	fp.n.Store(3)
	p, err := New(cfg, consumers.Deps{State: newFileStore(t), Publisher: fp, Topics: d.topics})
	if err != nil {
		t.Fatal(err)
	}
	p.dlqRetry = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	handle(t, p, testEvent(1, "c", 1))
	eventually(t, 5*time.Second, "the DLQ message once the DLQ is back", func() bool { return len(d.messages()) == 1 })
	if fp.n.Load() > -1 {
		t.Fatalf("the DLQ was published to before its failures were used up")
	}
}

// Events no endpoint subscribes to are acknowledged without being queued.
func TestUnmatchedEventIsNotQueued(t *testing.T) {
	l := newListener(t, nil)
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, Filter: Filter{Orgs: []string{"other"}}})
	store := newFileStore(t)
	p := start(t, cfg, store, newDLQ(t))
	handle(t, p.Plugin, testEvent(1, "c", 1))
	time.Sleep(50 * time.Millisecond)
	if n := len(l.requests()); n != 0 {
		t.Fatalf("an endpoint filtered on another org got %d requests", n)
	}
}

// A huge response body is not read past max_response_bytes: the attempt
// ends early and the connection is dropped.
func TestResponseBodyIsBounded(t *testing.T) {
	var written atomic.Int64
	l := newListener(t, nil)
	l.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for range 1600 { // 100 MiB
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
	cfg.RetrySchedule = nil
	cfg.MaxResponseBytes = 1 << 10
	d := newDLQ(t)
	p := start(t, cfg, newFileStore(t), d)
	handle(t, p.Plugin, testEvent(1, "c", 1))
	eventually(t, 10*time.Second, "the DLQ message", func() bool { return len(d.messages()) == 1 })
	time.Sleep(100 * time.Millisecond)
	if w := written.Load(); w >= 100<<20 {
		t.Fatalf("the whole 100 MiB body was accepted by the client")
	}
	if r := d.messages()[0].Metadata.Get(schemas.DLQReasonMetadata); len(r) > 400 {
		t.Fatalf("reason is %d bytes; the response body should be cut to a short excerpt", len(r))
	}
}
