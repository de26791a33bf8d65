package unpod

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const testToken = "tok-SECRET-5f3a9c"

const okPage = `{"count":1,"status_code":200,"message":"ok","data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":207}]}`

// fastConfig retries quickly so that tests stay short.
func fastConfig(url string) Config {
	return Config{
		BaseURL: url, Token: testToken, RateLimit: -1, Timeout: 2 * time.Second,
		MaxRetryTime: 3 * time.Second, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
	}
}

// script answers the n-th request (0-based) with steps[n], repeating the
// last step.
func script(t *testing.T, steps ...http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1) - 1)
		steps[min(i, len(steps)-1)](w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func status(code int, msg string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"status_code":%d,"message":%q}`, code, msg)
	}
}

func ok(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(okPage)) }

func TestStatusCodes(t *testing.T) {
	tests := []struct {
		code      int
		sentinel  error
		permanent bool
	}{
		{400, ErrBadRequest, true},
		{401, ErrUnauthorized, true},
		{403, ErrForbidden, true},
		{404, ErrNotFound, true},
		{418, ErrUnexpected, true},
		{429, ErrRateLimited, false},
		{500, ErrServer, false},
		{502, ErrServer, false},
		{503, ErrServer, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			// Always failing: permanent codes must stop after one request,
			// retryable ones must be retried until MaxRetryTime.
			srv, n := script(t, status(tt.code, "nope from server"))
			cfg := fastConfig(srv.URL)
			cfg.MaxRetryTime = 400 * time.Millisecond
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			// Page 1: a 404 on a later page is past the end (TestPastLastPage).
			_, err = c.CallLogs(context.Background(), Query{Org: "acme", Page: 1})
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want an *APIError", err)
			}
			if !errors.Is(err, tt.sentinel) || IsPermanent(err) != tt.permanent || IsRetryable(ae) == tt.permanent {
				t.Errorf("err = %v: sentinel %v, IsPermanent %v", err, tt.sentinel, IsPermanent(err))
			}
			if ae.Status != tt.code || ae.Message != "nope from server" || ae.Org != "acme" || ae.Method != "GET" ||
				!strings.HasSuffix(ae.URL, CallLogsPath+"?page=1") {
				t.Errorf("APIError = %+v", ae)
			}
			if tt.permanent && n.Load() != 1 {
				t.Errorf("%d requests for a permanent error, want 1", n.Load())
			}
			if !tt.permanent && n.Load() < 3 {
				t.Errorf("%d requests for a retryable error, want retries", n.Load())
			}
		})
	}
}

func TestRetriesThenSucceeds(t *testing.T) {
	reset := func(w http.ResponseWriter, _ *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}
	truncated := func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(okPage[:40])) }
	srv, n := script(t, status(500, "boom"), status(503, "down"), reset, truncated,
		status(429, "slow down", "Retry-After", "0"), ok)
	c, err := New(fastConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.CallLogs(context.Background(), Query{Org: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Load() != 6 || p.Count != 1 || len(p.Records) != 1 || p.Records[0].DurationSeconds != 207 {
		t.Fatalf("after %d requests: %+v", n.Load(), p)
	}
}

func TestTimeoutRetried(t *testing.T) {
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}
	srv, n := script(t, slow, ok)
	cfg := fastConfig(srv.URL)
	cfg.Timeout = 100 * time.Millisecond
	c, _ := New(cfg)
	start := time.Now()
	if _, err := c.CallLogs(context.Background(), Query{Org: "acme"}); err != nil {
		t.Fatal(err)
	}
	// Without the per-request timeout the first request would take 10 s.
	if n.Load() != 2 || time.Since(start) > 5*time.Second {
		t.Fatalf("%d requests in %s; want the slow one cut at the timeout and retried", n.Load(), time.Since(start))
	}
}

func TestContextCancelStopsRetrying(t *testing.T) {
	srv, _ := script(t, status(500, "boom"))
	cfg := fastConfig(srv.URL)
	cfg.MaxRetryTime = time.Minute
	c, _ := New(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.CallLogs(ctx, Query{Org: "acme"})
	// Without the context, retries would go on for a minute.
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("err = %v after %s; want the context's deadline promptly", err, time.Since(start))
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		header func() string
		min    time.Duration
	}{
		{"seconds", func() string { return "1" }, 900 * time.Millisecond},
		// HTTP dates have whole seconds: now+2s truncated is at least 1s away.
		{"http date", func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }, 900 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			throttle := func(w http.ResponseWriter, r *http.Request) {
				status(429, "throttled", "Retry-After", tt.header())(w, r)
			}
			srv, n := script(t, throttle, ok)
			c, _ := New(fastConfig(srv.URL))
			start := time.Now()
			if _, err := c.CallLogs(context.Background(), Query{Org: "acme"}); err != nil {
				t.Fatal(err)
			}
			// The backoff alone would wait under 20 ms.
			if took := time.Since(start); took < tt.min || n.Load() != 2 {
				t.Fatalf("retried after %s (%d requests); want Retry-After honoured", took, n.Load())
			}
		})
	}
}

func TestRetryAfterBeyondBudget(t *testing.T) {
	srv, n := script(t, status(429, "throttled", "Retry-After", "3600"))
	c, _ := New(fastConfig(srv.URL))
	start := time.Now()
	_, err := c.CallLogs(context.Background(), Query{Org: "acme"})
	var ae *APIError
	if !errors.As(err, &ae) || RetryAfter(err) != time.Hour || n.Load() != 1 || time.Since(start) > time.Second {
		t.Fatalf("err = %v after %d requests; want the 429 returned at once with RetryAfter 1h", err, n.Load())
	}
}

func TestRateLimit(t *testing.T) {
	srv, n := script(t, ok)
	run := func(rate float64) time.Duration {
		cfg := fastConfig(srv.URL)
		cfg.RateLimit = rate
		c, _ := New(cfg)
		start := time.Now()
		for i := 0; i < 6; i++ {
			if _, err := c.CallLogs(context.Background(), Query{Org: "acme"}); err != nil {
				t.Fatal(err)
			}
		}
		return time.Since(start)
	}
	// 6 requests at 5/s need at least 5 intervals of 200 ms.
	if took := run(5); took < 980*time.Millisecond || n.Load() != 6 {
		t.Fatalf("6 requests at 5 req/s took %s", took)
	}
	// Unlimited, the same requests to a local server take milliseconds;
	// a second is slack for a loaded machine.
	if took := run(-1); took > 980*time.Millisecond {
		t.Fatalf("unlimited client took %s for 6 requests: the limiter is on", took)
	}
}

func TestRequestShape(t *testing.T) {
	for _, base := range []string{"", "/", "/prefix", "/prefix/"} {
		t.Run(base, func(t *testing.T) {
			var got *http.Request
			srv, _ := script(t, func(w http.ResponseWriter, r *http.Request) { got = r; ok(w, r) })
			c, err := New(fastConfig(srv.URL + base))
			if err != nil {
				t.Fatal(err)
			}
			q := Query{Org: "unpod", Page: 3, PageSize: 1000, CallType: "outbound", CallStatus: "no-answer",
				Start: time.Date(2026, 2, 7, 5, 0, 0, 0, time.FixedZone("IST", 19800)),
				End:   time.Date(2026, 2, 7, 6, 0, 0, 500e6, time.UTC)}
			if _, err := c.CallLogs(context.Background(), q); err != nil {
				t.Fatal(err)
			}
			wantPath := strings.TrimSuffix(base, "/") + CallLogsPath
			if got.URL.Path != wantPath {
				t.Errorf("path = %s, want %s", got.URL.Path, wantPath)
			}
			v := got.URL.Query()
			if v.Get("page") != "3" || v.Get("page_size") != "1000" || v.Get("call_type") != "outbound" ||
				v.Get("call_status") != "no-answer" || v.Get("start_date") != "2026-02-06T23:30:00Z" ||
				v.Get("end_date") != "2026-02-07T06:00:00.5Z" {
				t.Errorf("query = %v", v)
			}
			if got.Header.Get("Authorization") != "Token "+testToken || got.Header.Get("Org-Handle") != "unpod" {
				t.Errorf("headers = %v", got.Header)
			}
		})
	}
}

func TestQueryValidation(t *testing.T) {
	srv, n := script(t, ok)
	c, _ := New(fastConfig(srv.URL))
	for _, q := range []Query{{}, {Org: "a", Page: -1}, {Org: "a", CallType: "sideways"}, {Org: "a", CallStatus: "ringing"}} {
		if _, err := c.CallLogs(context.Background(), q); err == nil {
			t.Errorf("query %+v accepted", q)
		}
	}
	if n.Load() != 0 {
		t.Errorf("invalid queries sent %d requests", n.Load())
	}
	for _, cfg := range []Config{{BaseURL: "ftp://x", Token: "t"}, {BaseURL: "http://", Token: "t"}, {BaseURL: "http://x"}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestOrganizations(t *testing.T) {
	srv, _ := script(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != OrganizationsPath || r.Header.Get("Org-Handle") != "" {
			http.Error(w, "wrong request", 400)
			return
		}
		w.Write([]byte(`{"count":1,"status_code":200,"message":"ok","data":[{"name":"Unpod","domain_handle":"unpod"}]}`))
	})
	c, _ := New(fastConfig(srv.URL))
	orgs, err := c.Organizations(context.Background())
	if err != nil || len(orgs) != 1 || orgs[0].Handle != "unpod" {
		t.Fatalf("Organizations = %+v, %v", orgs, err)
	}
}

// TestTokenNeverLeaks drives every path that logs or fails, with a server
// that even echoes the token back, and searches logs, errors and metrics.
func TestTokenNeverLeaks(t *testing.T) {
	echo := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			status(code, "bad header "+r.Header.Get("Authorization"))(w, r)
		}
	}
	reset := func(w http.ResponseWriter, _ *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}
	srv, _ := script(t, echo(500), echo(429), reset, echo(401), ok, echo(403), echo(404), echo(400))
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	cfg := fastConfig(srv.URL)
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Registerer = reg
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	for i := 0; i < 5; i++ {
		if _, err := c.CallLogs(context.Background(), Query{Org: "acme"}); err != nil {
			errs = append(errs, err.Error(), fmt.Sprintf("%+v %#v", err, err))
		}
	}
	if len(errs) < 4 {
		t.Fatalf("want several errors, got %d", len(errs)/2)
	}
	var metrics bytes.Buffer
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		metrics.WriteString(mf.String())
	}
	if !strings.Contains(metrics.String(), "unpod_requests_total") || !strings.Contains(logs.String(), "retrying") {
		t.Fatalf("nothing captured: logs %q metrics %q", logs.String(), metrics.String())
	}
	for what, text := range map[string]string{"logs": logs.String(), "errors": strings.Join(errs, "\n"), "metrics": metrics.String()} {
		if strings.Contains(text, testToken) || strings.Contains(text, "SECRET") {
			t.Errorf("token found in %s:\n%s", what, text)
		}
	}
}

func TestMetricsShareRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for i := 0; i < 2; i++ {
		if _, err := New(Config{Token: "t", Registerer: reg}); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
}

func TestOrganizationsPaged(t *testing.T) {
	srv, n := script(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("page") {
		case "":
			w.Write([]byte(`{"count":3,"data":[{"name":"A","domain_handle":"a"},{"name":"B","domain_handle":"b"}]}`))
		case "2":
			w.Write([]byte(`{"count":3,"data":[{"name":"C","domain_handle":"c"}]}`))
		default:
			http.Error(w, "no such page", 404)
		}
	})
	c, _ := New(fastConfig(srv.URL))
	orgs, err := c.Organizations(context.Background())
	if err != nil || len(orgs) != 3 || orgs[2].Handle != "c" || n.Load() != 2 {
		t.Fatalf("Organizations = %+v, %v after %d requests", orgs, err, n.Load())
	}
}

func TestErrorEnvelopeIn200(t *testing.T) {
	srv, n := script(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"status_code":403,"message":"Invalid organization handle"}`))
	})
	c, _ := New(fastConfig(srv.URL))
	_, err := c.CallLogs(context.Background(), Query{Org: "nope"})
	var ae *APIError
	if !errors.As(err, &ae) || !errors.Is(err, ErrForbidden) || ae.Org != "nope" || ae.URL == "" || n.Load() != 1 {
		t.Fatalf("err = %v after %d requests; want a 403 APIError at once", err, n.Load())
	}
	if _, err := c.Organizations(context.Background()); !errors.Is(err, ErrForbidden) {
		t.Fatalf("organizations: err = %v, want 403", err)
	}
}
