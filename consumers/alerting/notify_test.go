package alerting

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callstream/callstream/schemas"
)

func testNotice(kind string, n int) Notice {
	start := t0.Add(time.Hour)
	a := schemas.AlertEvent{
		AlertID: "alert-" + itoa(n), Rule: "missed-call-spike", Org: "acme", Group: map[string]string{"org": "acme"},
		State: schemas.AlertFiring, StartsAt: start, Value: 0.7, Threshold: 0.5, Window: "3m0s",
		SampleEventIDs: []string{"ev-1"}, Labels: map[string]string{"severity": "warning"},
		Annotations: map[string]string{"summary": "Inbound calls are going unanswered"},
	}
	if kind == KindResolved {
		end := start.Add(5 * time.Minute)
		a.State, a.EndsAt = schemas.AlertResolved, &end
	}
	return Notice{ID: noticeID(a.AlertID, kind, start.UnixNano()), Kind: kind, At: start, Alert: a, Count: 21, Total: 30, Baseline: 1.2}
}

// queueHarness runs one notifier queue and records what it confirmed.
type queueHarness struct {
	q      *queue
	m      *metrics
	mu     sync.Mutex
	done   []string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func runQueue(t *testing.T, name string, s sender, size int) *queueHarness {
	t.Helper()
	cfg := testConfig("").Notifiers
	cfg.QueueSize = size
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &queueHarness{m: m}
	h.q = newQueue(name, s, cfg, slog.New(slog.DiscardHandler), m, func(_, id string) {
		h.mu.Lock()
		h.done = append(h.done, id)
		h.mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.wg.Go(func() { h.q.run(ctx) })
	t.Cleanup(func() { cancel(); h.wg.Wait() })
	return h
}

func (h *queueHarness) confirmed() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.done...)
}

func TestNotifiersRetryAgainstRealListener(t *testing.T) {
	client := &http.Client{Timeout: 2 * time.Second}
	key, _ := decodeSecret(testSecret)
	tests := []struct {
		name  string
		build func(url string) sender
		path  string
		check func(t *testing.T, kind string, r received)
	}{
		{
			name:  NotifierWebhook,
			build: func(url string) sender { return &webhookSender{client: client, url: url, key: key, now: time.Now} },
			check: func(t *testing.T, kind string, r received) {
				var a schemas.AlertEvent
				if err := json.Unmarshal(r.body, &a); err != nil || a.AlertID != "alert-1" || r.header.Get(HeaderNotificationKind) != kind {
					t.Fatalf("webhook body %s, kind %q", r.body, r.header.Get(HeaderNotificationKind))
				}
				if !strings.HasPrefix(r.header.Get(HeaderWebhookSignature), "v1,") {
					t.Fatalf("unsigned: %v", r.header)
				}
			},
		},
		{
			name:  NotifierSlack,
			build: func(url string) sender { return &slackSender{client: client, url: url} },
			check: func(t *testing.T, kind string, r received) {
				var body map[string]string
				if err := json.Unmarshal(r.body, &body); err != nil || len(body) != 1 {
					t.Fatalf("slack body %s", r.body)
				}
				head := map[string]string{KindFiring: "[FIRING] missed-call-spike (org=acme): Inbound calls are going unanswered", KindResolved: "[RESOLVED] missed-call-spike"}[kind]
				if !strings.HasPrefix(body["text"], head) || !strings.Contains(body["text"], "21 matching of 30 calls in the last 3m0s (70%)") {
					t.Fatalf("slack text %q, want it to start with %q", body["text"], head)
				}
			},
		},
		{
			name: NotifierAlertmanager,
			build: func(url string) sender {
				return &alertmanagerSender{client: client, url: url + "/api/v2/alerts", resend: time.Hour, now: time.Now, active: map[string]Notice{}}
			},
			path: "/api/v2/alerts",
			check: func(t *testing.T, kind string, r received) {
				var body []amAlert
				if err := json.Unmarshal(r.body, &body); err != nil || len(body) != 1 {
					t.Fatalf("alertmanager body %s", r.body)
				}
				a := body[0]
				if a.Labels["alertname"] != "missed-call-spike" || a.Labels["org"] != "acme" || a.Labels["severity"] != "warning" ||
					a.Annotations["summary"] == "" || !a.StartsAt.Equal(t0.Add(time.Hour)) {
					t.Fatalf("alertmanager alert %+v", a)
				}
				if kind == KindResolved && !a.EndsAt.Equal(t0.Add(time.Hour+5*time.Minute)) {
					t.Fatalf("resolved endsAt %s", a.EndsAt)
				}
				if kind == KindFiring && !a.EndsAt.After(time.Now()) {
					t.Fatalf("firing endsAt %s is not in the future", a.EndsAt)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recv := newReceiver(t)
			recv.fails = 2
			h := runQueue(t, tt.name, tt.build(recv.srv.URL), 10)
			firing, resolved := testNotice(KindFiring, 1), testNotice(KindResolved, 1)
			h.q.enqueue(firing)
			h.q.enqueue(resolved)
			waitFor(t, "both notices confirmed", func() bool { return len(h.confirmed()) == 2 })
			reqs := recv.requests()
			if len(reqs) != 4 {
				t.Fatalf("got %d requests, want 2 failures and 2 deliveries", len(reqs))
			}
			for i, r := range reqs {
				if tt.path != "" && r.path != tt.path {
					t.Fatalf("path %q, want %q", r.path, tt.path)
				}
				kind := KindFiring
				if i == 3 {
					kind = KindResolved
				}
				tt.check(t, kind, r)
			}
			if got := testutil.ToFloat64(h.m.notifications.WithLabelValues(tt.name, "retried")); got != 2 {
				t.Fatalf("retries counted %v, want 2", got)
			}
			if got := testutil.ToFloat64(h.m.notifications.WithLabelValues(tt.name, "sent")); got != 2 {
				t.Fatalf("sent counted %v, want 2", got)
			}
		})
	}
}

func TestNotifierDoesNotRetryClientErrors(t *testing.T) {
	recv := newReceiver(t)
	recv.code = http.StatusBadRequest
	h := runQueue(t, NotifierSlack, &slackSender{client: http.DefaultClient, url: recv.srv.URL}, 10)
	h.q.enqueue(testNotice(KindFiring, 1))
	waitFor(t, "the notice given up", func() bool { return len(h.confirmed()) == 1 })
	if n := len(recv.requests()); n != 1 {
		t.Fatalf("a 400 was retried: %d requests", n)
	}
	if got := testutil.ToFloat64(h.m.notifications.WithLabelValues(NotifierSlack, "failed")); got != 1 {
		t.Fatalf("failed counted %v", got)
	}
}

func TestDeadNotifierDropsOldestAndNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get(HeaderWebhookID))
		mu.Unlock()
		<-release
	}))
	defer srv.Close()
	defer close(release)
	key, _ := decodeSecret(testSecret)
	h := runQueue(t, NotifierWebhook, &webhookSender{client: &http.Client{Timeout: 5 * time.Second}, url: srv.URL, key: key, now: time.Now}, 2)
	notices := make([]Notice, 6)
	for i := range notices {
		notices[i] = testNotice(KindFiring, i)
	}
	h.q.enqueue(notices[0])
	waitFor(t, "the first request to hang", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 1 })
	start := time.Now()
	for _, n := range notices[1:] {
		h.q.enqueue(n)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("enqueueing to a hung notifier took %s", d)
	}
	// Queue of 2 while one hangs: notices 1, 2 and 3 were dropped.
	got := h.confirmed()
	if len(got) != 3 || got[0] != notices[1].ID || got[2] != notices[3].ID {
		t.Fatalf("dropped %v, want the three oldest waiting", got)
	}
	if d := testutil.ToFloat64(h.m.notifications.WithLabelValues(NotifierWebhook, "dropped")); d != 3 {
		t.Fatalf("dropped counted %v", d)
	}
}

func TestAlertmanagerResendsFiringAlerts(t *testing.T) {
	recv := newReceiver(t)
	am := &alertmanagerSender{client: http.DefaultClient, url: recv.srv.URL + "/api/v2/alerts", resend: time.Hour, now: time.Now, active: map[string]Notice{}}
	ctx := context.Background()
	for i := range 2 {
		if err := am.send(ctx, testNotice(KindFiring, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := am.resendOnce(ctx); err != nil {
		t.Fatal(err)
	}
	reqs := recv.requests()
	var batch []amAlert
	if err := json.Unmarshal(reqs[len(reqs)-1].body, &batch); err != nil || len(batch) != 2 || !batch[0].EndsAt.After(time.Now()) {
		t.Fatalf("resend body %s, want both firing alerts with endsAt ahead", reqs[len(reqs)-1].body)
	}
	if err := am.send(ctx, testNotice(KindResolved, 0)); err != nil {
		t.Fatal(err)
	}
	if err := am.resendOnce(ctx); err != nil {
		t.Fatal(err)
	}
	reqs = recv.requests()
	if err := json.Unmarshal(reqs[len(reqs)-1].body, &batch); err != nil || len(batch) != 1 || batch[0].Labels["alertname"] == "" {
		t.Fatalf("resend after a resolution: %s, want only the alert still firing", reqs[len(reqs)-1].body)
	}
	if err := am.send(ctx, testNotice(KindResolved, 1)); err != nil {
		t.Fatal(err)
	}
	n := len(recv.requests())
	if err := am.resendOnce(ctx); err != nil || len(recv.requests()) != n {
		t.Fatal("resolved alerts are still being resent")
	}
	// The loop resends by itself.
	am.resend = 20 * time.Millisecond
	if err := am.send(ctx, testNotice(KindFiring, 3)); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go am.run(runCtx)
	waitFor(t, "a periodic resend", func() bool { return len(recv.requests()) >= n+3 })
}
