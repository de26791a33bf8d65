package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// TestStatusDecidesTheOutcome: only a 2xx answer delivers; a 3xx (even
// 300) is a failure like any other, retried and then dead-lettered. Each
// attempt is counted under its response class.
func TestStatusDecidesTheOutcome(t *testing.T) {
	tests := []struct {
		status    int
		delivered bool
		class     string
	}{
		{200, true, "2xx"},
		{204, true, "2xx"},
		{299, true, "2xx"},
		{300, false, "3xx"},
		{404, false, "4xx"},
		{500, false, "5xx"},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			l := newListener(t, func(int, *http.Request, []byte) int { return tt.status })
			cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
			d := newDLQ(t)
			p := start(t, cfg, newFileStore(t), d)
			handle(t, p.Plugin, testEvent(1, "c", 1))
			want := 1
			if !tt.delivered {
				want = 1 + len(cfg.RetrySchedule)
				eventually(t, 5*time.Second, "the DLQ message", func() bool { return len(d.messages()) == 1 })
			}
			eventually(t, 5*time.Second, "the attempts", func() bool { return len(l.requests()) == want })
			eventually(t, 5*time.Second, "the attempts metric", func() bool {
				return testutil.ToFloat64(p.metrics.attempts.WithLabelValues("a", tt.class)) == float64(want)
			})
			time.Sleep(30 * time.Millisecond) // room for a wrong extra attempt
			if n := len(l.requests()); n != want {
				t.Fatalf("%d attempts, want %d", n, want)
			}
			if tt.delivered && len(d.messages()) != 0 {
				t.Fatalf("a %d answer was dead-lettered", tt.status)
			}
		})
	}
}

// TestUnreachableCountsAsError: no response at all is the "error" class.
func TestUnreachableCountsAsError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	cfg := testConfig(EndpointConfig{Name: "a", URL: url, Secrets: Secrets{newSecret(t)}})
	d := newDLQ(t)
	p := start(t, cfg, newFileStore(t), d)
	handle(t, p.Plugin, testEvent(1, "c", 1))
	eventually(t, 5*time.Second, "the DLQ message", func() bool { return len(d.messages()) == 1 })
	if got := testutil.ToFloat64(p.metrics.attempts.WithLabelValues("a", "error")); got != float64(1+len(cfg.RetrySchedule)) {
		t.Fatalf("attempts{class=error} = %v, want %d", got, 1+len(cfg.RetrySchedule))
	}
}

// TestRetryDelay: the schedule's step, jittered by up to retry_jitter
// either way; a longer Retry-After wins, capped by max_retry_after, which
// never shortens the schedule itself.
func TestRetryDelay(t *testing.T) {
	tests := []struct {
		name       string
		step       time.Duration
		jitter     float64
		retryAfter time.Duration
		want       time.Duration // exact when jitter is 0
	}{
		{"schedule", time.Minute, 0, 0, time.Minute},
		{"shorter retry-after", time.Minute, 0, time.Second, time.Minute},
		{"longer retry-after", time.Minute, 0, 10 * time.Minute, 10 * time.Minute},
		{"retry-after capped", time.Minute, 0, 3 * time.Hour, time.Hour},
		{"cap never shortens the schedule", 2 * time.Hour, 0, 2 * time.Hour, 2 * time.Hour},
		{"immediate step", 0, 0.2, 0, 0},
	}
	for _, tt := range tests {
		p := &Plugin{cfg: Config{RetrySchedule: []time.Duration{time.Hour, tt.step}, RetryJitter: tt.jitter, MaxRetryAfter: time.Hour}}
		if got := p.retryDelay(2, tt.retryAfter); got != tt.want {
			t.Errorf("%s: retryDelay = %s, want %s", tt.name, got, tt.want)
		}
	}

	p := &Plugin{cfg: Config{RetrySchedule: []time.Duration{time.Minute}, RetryJitter: 0.2, MaxRetryAfter: time.Hour}}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := p.retryDelay(1, 0)
		if d < 48*time.Second || d > 72*time.Second {
			t.Fatalf("jittered delay %s outside a minute ± 20%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("%d distinct delays in 200 draws: no jitter", len(seen))
	}
}

// TestDLQTypeFollowsRevision: a dead-lettered event keeps the CloudEvents
// type of the record it came from, so a replay republishes it as such.
func TestDLQTypeFollowsRevision(t *testing.T) {
	l := newListener(t, func(int, *http.Request, []byte) int { return http.StatusGone })
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
	d := newDLQ(t)
	p := start(t, cfg, newFileStore(t), d)
	handle(t, p.Plugin, testEvent(1, "c1", 1))
	handle(t, p.Plugin, testEvent(2, "c2", 2))
	eventually(t, 5*time.Second, "two DLQ messages", func() bool { return len(d.messages()) == 2 })
	want := map[string]string{testEvent(1, "", 1).EventID: schemas.TypeCallCreated, testEvent(2, "", 2).EventID: schemas.TypeCallUpdated}
	for _, m := range d.messages() {
		id := m.Metadata.Get(schemas.HeaderID)
		if got := m.Metadata.Get(schemas.HeaderType); got != want[id] {
			t.Errorf("DLQ message of %s has type %q, want %q", id, got, want[id])
		}
	}
}

// TestShutdownMidAttemptCostsNothing: an attempt cut short by our own
// shutdown is not the endpoint's failure. With no retries left in the
// schedule it must not dead-letter the event; after a restart the event is
// delivered.
func TestShutdownMidAttemptCostsNothing(t *testing.T) {
	var hang atomic.Bool
	hang.Store(true)
	l := newListener(t, func(int, *http.Request, []byte) int {
		if hang.Load() {
			return 0 // hang until the sender gives up
		}
		return http.StatusOK
	})
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
	cfg.RetrySchedule = nil // one attempt only
	store, d := newFileStore(t), newDLQ(t)
	p := start(t, cfg, store, d)
	handle(t, p.Plugin, testEvent(1, "c", 1))
	eventually(t, 5*time.Second, "the attempt to start", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.perID[testEvent(1, "", 1).EventID] == 1
	})
	p.stop(t)
	p.Close()
	if n := len(d.messages()); n != 0 {
		t.Fatalf("%d DLQ messages: the attempt our shutdown cut short was counted", n)
	}
	if got := testutil.ToFloat64(p.metrics.attempts.WithLabelValues("a", "error")); got != 0 {
		t.Fatalf("attempts{class=error} = %v after our own shutdown", got)
	}

	hang.Store(false)
	start(t, cfg, store, d)
	eventually(t, 5*time.Second, "the delivery after restart", func() bool { return l.successes()[testEvent(1, "", 1).EventID] == 1 })
	if n := len(d.messages()); n != 0 {
		t.Fatalf("%d DLQ messages", n)
	}
}

// TestBodyIsThePayloadAsReceived: the body is the record's bytes, not a
// re-encoding: fields this version does not know (a newer producer's)
// and the producer's formatting reach the receiver, and the signature
// covers exactly them. A delivery without a payload sends the event's
// JSON.
func TestBodyIsThePayloadAsReceived(t *testing.T) {
	l := newListener(t, nil)
	cfg := testConfig(EndpointConfig{Name: "a", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}})
	p := start(t, cfg, newFileStore(t), newDLQ(t))

	ev := testEvent(1, "c1", 1)
	d := delivery(t, ev)
	d.Payload = append([]byte(`{"x_future_field": [1, 2], `), d.Payload[1:]...)
	if err := p.Handle(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	bare := testEvent(2, "c2", 1)
	if err := p.Handle(context.Background(), consumers.Delivery{Event: bare}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "both deliveries", func() bool { return len(l.requests()) == 2 })
	for _, r := range l.requests() {
		switch id := r.header.Get(HeaderID); id {
		case ev.EventID:
			if !bytes.Equal(r.body, d.Payload) {
				t.Errorf("body %s, want the payload as received %s", r.body, d.Payload)
			}
		case bare.EventID:
			var back schemas.CallEvent
			if err := json.Unmarshal(r.body, &back); err != nil || back.EventID != bare.EventID || back.CallKey != "c2" {
				t.Errorf("body %q of a delivery without payload: want the event's JSON (%v)", r.body, err)
			}
		default:
			t.Errorf("unexpected delivery %s", id)
		}
	}
}
