package telemetry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

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
