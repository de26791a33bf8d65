package unpod

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/retryafter"
)

// listener is a plain HTTP server on addr that counts its requests and
// remembers every Authorization header it was sent.
type listener struct {
	srv   *httptest.Server
	n     atomic.Int64
	auths atomic.Value // []string
}

func newListener(t *testing.T, addr string) *listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	l := &listener{}
	l.auths.Store([]string(nil))
	l.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.n.Add(1)
		l.auths.Store(append(l.auths.Load().([]string), r.Header.Get("Authorization")))
		w.Write([]byte(`{"count":0,"data":[]}`)) // an empty page: exactly what must not be taken for the answer
	}))
	l.srv.Listener.Close()
	l.srv.Listener = ln
	l.srv.Start()
	t.Cleanup(l.srv.Close)
	return l
}

// TestRedirectRefused follows an https->http redirect and a cross-host one
// with real listeners: the second listener never gets a request (so never
// the token), and the answer is a permanent error naming the Location's
// host without its credentials, path or query, not an empty page.
func TestRedirectRefused(t *testing.T) {
	plain := newListener(t, "127.0.0.1:0")
	other := newListener(t, "127.0.0.2:0") // another host on the loopback net
	tests := []struct {
		name   string
		target *listener
		tls    bool
		host   string
	}{
		{"https to http", plain, true, plain.srv.Listener.Addr().String()},
		{"cross host", other, false, other.srv.Listener.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			location := "http://leak-user:leak-pass@" + tt.host + "/api/v2/platform/call-logs/?page=1&token=leak-query"
			redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, location, http.StatusFound)
			})
			var src *httptest.Server
			if tt.tls {
				src = httptest.NewTLSServer(redirect)
			} else {
				src = httptest.NewServer(redirect)
			}
			defer src.Close()
			cfg := fastConfig(src.URL)
			cfg.HTTPClient = src.Client() // trusts the test certificate; its redirect policy is overridden
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			before := tt.target.n.Load()
			p, err := c.CallLogs(context.Background(), Query{Org: "acme"})
			if p != nil || !errors.Is(err, ErrRedirect) || !IsPermanent(err) || IsRetryable(err) {
				t.Fatalf("page %+v, err %v: want a permanent ErrRedirect", p, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "http://"+tt.host) {
				t.Errorf("error %q does not name the Location host %s", msg, tt.host)
			}
			for _, leak := range []string{"leak-user", "leak-pass", "leak-query", testToken} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q holds %q", msg, leak)
				}
			}
			if n := tt.target.n.Load() - before; n != 0 {
				t.Fatalf("the redirect target got %d requests (Authorization %q)", n, tt.target.auths.Load())
			}
		})
	}
}

// TestPastLastPage serves Django REST Framework's answer to a page past
// the end: on page 2 it means the data ended (not retried, not
// permanent), on page 1 or naming the organization it stays "not found".
func TestPastLastPage(t *testing.T) {
	invalid := `{"detail":"Invalid page."}`
	orgGone := `{"status_code":404,"message":"Organization not found."}`
	tests := []struct {
		name      string
		page      int
		body      string
		pastEnd   bool
		permanent bool
	}{
		{"page 2 invalid page", 2, invalid, true, false},
		{"page 7 empty body", 7, ``, true, false},
		{"page 1 invalid page", 1, invalid, false, true},
		{"page 2 names the organization", 2, orgGone, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, n := script(t, func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(tt.body))
			})
			c, _ := New(fastConfig(srv.URL))
			_, err := c.CallLogs(context.Background(), Query{Org: "acme", Page: tt.page})
			if errors.Is(err, ErrPastLastPage) != tt.pastEnd || errors.Is(err, ErrNotFound) == tt.pastEnd ||
				IsPermanent(err) != tt.permanent || IsRetryable(err) || n.Load() != 1 {
				t.Fatalf("err = %v after %d requests: want past-end %v, permanent %v, no retry", err, n.Load(), tt.pastEnd, tt.permanent)
			}
		})
	}
	// A Pager takes it as the end of the data, with the count changed.
	srv, _ := script(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "2" {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(invalid))
			return
		}
		w.Write([]byte(`{"count":2,"data":[` + okRecord + `]}`))
	})
	c, _ := New(fastConfig(srv.URL))
	win, err := c.ReadWindow(context.Background(), Query{Org: "acme", PageSize: 1})
	if err != nil || len(win.Records) != 1 || !win.CountChanged {
		t.Fatalf("window %+v, %v: want one record, count changed, no error", win, err)
	}
}

const okRecord = `{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":207}`

// TestOrganizationsPastLastPage: a count that promises a second page that
// then answers 404 ends the listing with what arrived.
func TestOrganizationsPastLastPage(t *testing.T) {
	srv, n := script(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") == "" {
			w.Write([]byte(`{"count":4,"data":[{"name":"A","domain_handle":"a"},{"name":"B","domain_handle":"b"}]}`))
			return
		}
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"detail":"Invalid page."}`))
	})
	c, _ := New(fastConfig(srv.URL))
	orgs, err := c.Organizations(context.Background())
	if err != nil || len(orgs) != 2 || n.Load() != 2 {
		t.Fatalf("Organizations = %+v, %v after %d requests; want a and b", orgs, err, n.Load())
	}
}

// TestBodyLimit serves pages over a small MaxBodyBytes, with and without
// Content-Length: ErrBodyTooLarge at once, not "invalid JSON" retried
// forever.
func TestBodyLimit(t *testing.T) {
	big := `{"count":50,"data":[` + strings.TrimSuffix(strings.Repeat(okRecord+",", 50), ",") + `]}`
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			srv, n := script(t, func(w http.ResponseWriter, _ *http.Request) {
				if chunked {
					io.WriteString(w, big[:100])
					w.(http.Flusher).Flush()
					io.WriteString(w, big[100:])
					return
				}
				w.Header().Set("Content-Length", fmt.Sprint(len(big)))
				io.WriteString(w, big)
			})
			cfg := fastConfig(srv.URL)
			cfg.MaxBodyBytes = 1000
			c, _ := New(cfg)
			_, err := c.CallLogs(context.Background(), Query{Org: "acme"})
			if !errors.Is(err, ErrBodyTooLarge) || IsRetryable(err) || n.Load() != 1 {
				t.Fatalf("err = %v after %d requests; want ErrBodyTooLarge at once", err, n.Load())
			}
			cfg.MaxBodyBytes = int64(len(big))
			c, _ = New(cfg)
			if p, err := c.CallLogs(context.Background(), Query{Org: "acme"}); err != nil || len(p.Records) != 50 {
				t.Fatalf("at the limit: %v", err)
			}
		})
	}
}

// TestRetryAfterOverADay: a 429 asking for two days is returned with
// RetryAfter capped at a day, not 0.
func TestRetryAfterOverADay(t *testing.T) {
	srv, _ := script(t, status(429, "throttled", "Retry-After", "172800"))
	c, _ := New(fastConfig(srv.URL))
	_, err := c.CallLogs(context.Background(), Query{Org: "acme"})
	if RetryAfter(err) != retryafter.Max {
		t.Fatalf("RetryAfter = %s (err %v), want %s", RetryAfter(err), err, retryafter.Max)
	}
}

// TestURLCredentialsNeverShown plants credentials and a token query in
// base_url, drives retries, a failure and a bad URL, and greps every log
// line and error for them. The server checks that they are never sent.
func TestURLCredentialsNeverShown(t *testing.T) {
	var sent atomic.Value
	sent.Store("")
	srv, _ := script(t, func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok || strings.Contains(r.URL.RawQuery, "planted") {
			sent.Store(fmt.Sprintf("basic %q %q, query %q", u, p, r.URL.RawQuery))
		}
		status(500, "boom")(w, r)
	})
	var logs bytes.Buffer
	cfg := fastConfig(strings.Replace(srv.URL, "http://", "http://planted-user:planted-pass@", 1) + "/?token=planted-token&x=1")
	cfg.MaxRetryTime = 200 * time.Millisecond
	cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	if _, err := c.CallLogs(context.Background(), Query{Org: "acme"}); err != nil {
		errs = append(errs, err.Error())
	}
	if _, err := c.Organizations(context.Background()); err != nil {
		errs = append(errs, err.Error())
	}
	for _, bad := range []string{"http://planted-user:planted-pass@[::1", "ftp://planted-user:planted-pass@host/?token=planted-token"} {
		if _, err := New(Config{BaseURL: bad, Token: "t"}); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) != 4 || !strings.Contains(logs.String(), "retrying") {
		t.Fatalf("want 4 errors and retry logs, got %q and %q", errs, logs.String())
	}
	lines := append(strings.Split(strings.TrimSpace(logs.String()), "\n"), errs...)
	for _, line := range lines {
		if strings.Contains(line, "planted") {
			t.Errorf("planted credential in %q", line)
		}
	}
	if s := sent.Load().(string); s != "" {
		t.Errorf("credentials sent to the server: %s", s)
	}
}
