package webhooks

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/config"
	"github.com/callstream/callstream/schemas"
)

// No planted secret (a header value, a token in a URL's query, a signing
// secret) reaches the plug-in's log lines at any level, its DLQ messages'
// metadata or its metrics, through deliveries that succeed, fail with a
// status (from a receiver that echoes the request back in its error body),
// redirect to a URL carrying a token, time out, are refused, or end in the
// DLQ; nor does config.Print show them.
func TestSecretsStayOutOfLogsAndDLQ(t *testing.T) {
	signing := SecretPrefix + base64.StdEncoding.EncodeToString([]byte("PLANTED-signing-key-0123456789"))
	planted := []string{"PLANTED", strings.TrimPrefix(signing, SecretPrefix)}
	header := func(tag string) map[string]string {
		return map[string]string{"Authorization": "Bearer PLANTED-" + tag + "-bearer", "X-Api-Key": "PLANTED-" + tag + "-key"}
	}
	echo := newListener(t, nil)
	echo.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "rejected %s with Authorization=%s key=%s", r.URL.RequestURI(), r.Header.Get("Authorization"), r.Header.Get("X-Api-Key"))
	})
	redirect := newListener(t, nil)
	redirect.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://elsewhere.example/in?token=PLANTED-location-token&user="+r.URL.Query().Get("token"))
		w.WriteHeader(http.StatusFound)
	})
	hanging := newListener(t, func(int, *http.Request, []byte) int { return 0 })
	ok := newListener(t, nil)
	gone := newListener(t, func(int, *http.Request, []byte) int { return http.StatusGone })
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + closed.Addr().String() + "/in?key=PLANTED-refused-key"
	closed.Close()
	eps := []EndpointConfig{
		{Name: "echo", URL: echo.srv.URL + "/in?token=PLANTED-echo-token&team=ops", Headers: header("echo")},
		{Name: "redirect", URL: redirect.srv.URL + "/in?token=PLANTED-redirect-token", Headers: header("redirect")},
		{Name: "hanging", URL: hanging.srv.URL + "/in?access_token=PLANTED-hanging-token", Headers: header("hanging"), Timeout: 50 * time.Millisecond},
		{Name: "refused", URL: refusedURL, Headers: header("refused")},
		{Name: "ok", URL: ok.srv.URL + "/in?sig=PLANTED-ok-sig", Headers: header("ok")},
		{Name: "gone", URL: gone.srv.URL + "/in?api_key=PLANTED-gone-key", Headers: header("gone")},
	}
	for i := range eps {
		eps[i].Secrets = Secrets{signing}
	}
	cfg := testConfig(eps...)
	cfg.RetrySchedule = []time.Duration{time.Millisecond, time.Millisecond}
	cfg.BreakerFailures = 1 << 20 // not what this test is about
	logs := &syncBuffer{}         // safety_test.go
	reg := prometheus.NewRegistry()
	d := newDLQ(t)
	p, err := New(cfg, consumers.Deps{
		Logger:     slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: reg, State: newFileStore(t), Publisher: d.pubsub, Topics: d.topics,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	const n = 5
	handleBatch(t, p, batchOf(t, 0, n))
	// Every endpoint but ok ends each event in the DLQ.
	eventually(t, 20*time.Second, "every failing delivery in the DLQ", func() bool { return len(d.messages()) == n*(len(eps)-1) })
	eventually(t, 5*time.Second, "the successes", func() bool { return len(ok.successes()) == n })

	var texts []string
	texts = append(texts, logs.String())
	for _, m := range d.messages() {
		for k, v := range m.Metadata {
			texts = append(texts, k+"="+v)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&metrics, mf); err != nil {
			t.Fatal(err)
		}
	}
	texts = append(texts, metrics.String())
	printed, err := config.Print(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	texts = append(texts, printed)
	for _, text := range texts {
		for _, s := range planted {
			if i := strings.Index(text, s); i >= 0 {
				t.Errorf("%q leaked: ...%s...", s, text[max(i-120, 0):min(i+60, len(text))])
			}
		}
	}
	// The failures were logged and dead-lettered with their causes, so
	// the test did look at what a failure writes.
	for _, want := range []string{"status 500", "rejected", "redirect not followed", "elsewhere.example/in", "no response within", "connection refused", "410 Gone"} {
		if !strings.Contains(strings.Join(texts, "\n"), want) {
			t.Errorf("no log line or DLQ reason mentions %q; the test did not see that failure", want)
		}
	}
	if r := d.messages()[0].Metadata.Get(schemas.DLQReasonMetadata); r == "" {
		t.Fatal("DLQ message without a reason")
	}
}
