package telemetry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestServerEndpoints(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "callstream_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	logger, _ := NewLogger(io.Discard, DefaultLogConfig())
	s := NewServer(HTTPConfig{}, reg, logger)
	var broken bool
	s.AddReadiness("bus", func(context.Context) error {
		if broken {
			return errors.New("broker unreachable")
		}
		return nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	base := "http://" + ln.Addr().String()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "callstream_test_total 3") {
		t.Fatalf("/metrics = %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz ready = %d", code)
	}
	broken = true
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "broker unreachable") {
		t.Fatalf("/readyz broken = %d %q", code, body)
	}
}

func TestNewLogger(t *testing.T) {
	tests := []struct {
		cfg     LogConfig
		wantErr bool
		want    string
	}{
		{LogConfig{Format: "json", Level: "info"}, false, `"msg":"hello"`},
		{LogConfig{Format: "auto", Level: "info"}, false, `"msg":"hello"`}, // not a terminal: JSON
		{LogConfig{Format: "text", Level: "debug"}, false, "msg=hello"},
		{LogConfig{Format: "xml", Level: "info"}, true, ""},
		{LogConfig{Format: "json", Level: "loud"}, true, ""},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		l, err := NewLogger(&buf, tt.cfg)
		if (err != nil) != tt.wantErr {
			t.Fatalf("%+v: err = %v", tt.cfg, err)
		}
		if err != nil {
			continue
		}
		l.Info("hello")
		if !strings.Contains(buf.String(), tt.want) {
			t.Fatalf("%+v: log %q lacks %q", tt.cfg, buf.String(), tt.want)
		}
	}
}

func TestHandleMountsBesideBuiltins(t *testing.T) {
	reg := NewRegistry()
	logger, _ := NewLogger(io.Discard, DefaultLogConfig())
	s := NewServer(HTTPConfig{}, reg, logger)
	s.Handle("/{$}", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "page") }))
	// A stream that writes until its request ends, as server-sent events do.
	started := make(chan struct{})
	s.Handle("/stream", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	for path, want := range map[string]struct {
		code int
		body string
	}{
		"/":        {200, "page"},
		"/metrics": {200, "go_goroutines"},
		"/healthz": {200, `"ok"`},
		"/nope":    {404, ""},
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want.code || !strings.Contains(string(b), want.body) {
			t.Errorf("GET %s = %d %.80q, want %d containing %q", path, resp.StatusCode, b, want.code, want.body)
		}
	}
	resp, err := http.Get(base + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-started
	// Shutdown waits for active requests: the stream must end with ctx,
	// well before the 5 s shutdown timeout.
	begin := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 2*time.Second {
		t.Fatalf("Serve took %s to stop with a stream open: streams do not see the server's context", d)
	}
}

func TestHTTPConfigBaseURL(t *testing.T) {
	tests := []struct {
		cfg     HTTPConfig
		want    string
		wantErr bool
	}{
		{HTTPConfig{Listen: "127.0.0.1:9464"}, "http://127.0.0.1:9464", false},
		{HTTPConfig{Listen: ":9464"}, "http://localhost:9464", false},
		{HTTPConfig{Listen: "0.0.0.0:9464"}, "http://localhost:9464", false},
		{HTTPConfig{Listen: "[::]:9464"}, "http://localhost:9464", false},
		{HTTPConfig{Listen: "[::1]:9464"}, "http://[::1]:9464", false},
		{HTTPConfig{Listen: ""}, "", false},
		{HTTPConfig{Listen: ":9464", ExternalURL: "https://ops.example.com/callstream/"}, "https://ops.example.com/callstream", false},
		{HTTPConfig{ExternalURL: "ops.example.com"}, "", true},
		{HTTPConfig{ExternalURL: "ftp://ops.example.com"}, "", true},
		{HTTPConfig{ExternalURL: "https://ops.example.com/#x"}, "", true},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err != nil) != tt.wantErr {
			t.Errorf("%+v: Validate = %v, want error %v", tt.cfg, err, tt.wantErr)
		}
		if err != nil {
			if !strings.Contains(err.Error(), "external_url") {
				t.Errorf("%+v: error %q does not name the option", tt.cfg, err)
			}
			continue
		}
		if got := tt.cfg.BaseURL(); got != tt.want {
			t.Errorf("%+v: BaseURL = %q, want %q", tt.cfg, got, tt.want)
		}
	}
}

// TestReportInformsReadyz: a report shows in the /readyz body and never
// fails it; a failing check still does.
func TestReportInformsReadyz(t *testing.T) {
	s := NewServer(HTTPConfig{}, NewRegistry(), slog.New(slog.DiscardHandler))
	s.AddReport("orgs", func() any { return map[string]string{"acme": "paused: unauthorized"} })
	for _, failing := range []bool{false, true} {
		if failing {
			s.AddReadiness("bus", func(context.Context) error { return errors.New("broker down") })
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		want := http.StatusOK
		if failing {
			want = http.StatusServiceUnavailable
		}
		if rec.Code != want || !strings.Contains(rec.Body.String(), `"acme":"paused: unauthorized"`) {
			t.Fatalf("failing=%v: /readyz = %d %s", failing, rec.Code, rec.Body.String())
		}
	}
}
