// Package telemetry gives every callstream process the same operational
// surface: structured logs (log/slog), a Prometheus registry, and one HTTP
// listener serving /metrics, /healthz (the process is alive) and /readyz (its
// bus and sources answer). Components register metrics on the registry and
// readiness checks on the server instead of building their own.
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LogConfig selects the log format and level.
type LogConfig struct {
	Format string `yaml:"format" env:"CALLSTREAM_LOG_FORMAT" flag:"log-format" doc:"Log format: json or text."`
	Level  string `yaml:"level" env:"CALLSTREAM_LOG_LEVEL" flag:"log-level" doc:"Log level: debug, info, warn or error."`
}

// DefaultLogConfig logs JSON at info level.
func DefaultLogConfig() LogConfig { return LogConfig{Format: "json", Level: "info"} }

// NewLogger builds a logger writing to w.
func NewLogger(w io.Writer, cfg LogConfig) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("telemetry: log level %q: want debug, info, warn or error", cfg.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(cfg.Format) {
	case "json", "":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("telemetry: log format %q: want json or text", cfg.Format)
	}
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors, for one process.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// HTTPConfig configures the operational HTTP listener.
type HTTPConfig struct {
	Listen string `yaml:"listen" env:"CALLSTREAM_HTTP_LISTEN" flag:"http-listen" doc:"Address of the /metrics, /healthz and /readyz listener; empty disables it."`
}

// DefaultHTTPConfig listens on 127.0.0.1:9464.
func DefaultHTTPConfig() HTTPConfig { return HTTPConfig{Listen: "127.0.0.1:9464"} }

// Check reports whether one dependency is ready; nil means ready.
type Check func(ctx context.Context) error

// Server serves /metrics, /healthz and /readyz.
type Server struct {
	cfg    HTTPConfig
	reg    *prometheus.Registry
	logger *slog.Logger

	mu     sync.Mutex
	checks map[string]Check
}

// NewServer builds the operational server for reg.
func NewServer(cfg HTTPConfig, reg *prometheus.Registry, logger *slog.Logger) *Server {
	return &Server{cfg: cfg, reg: reg, logger: logger, checks: map[string]Check{}}
}

// AddReadiness registers a named readiness check; /readyz answers 200 only
// when every check passes.
func (s *Server) AddReadiness(name string, check Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = check
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/readyz", s.ready)
	return mux
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make(map[string]Check, len(s.checks))
	for n, c := range s.checks {
		checks[n] = c
	}
	s.mu.Unlock()
	sort.Strings(names)

	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	status, code := map[string]string{}, http.StatusOK
	for _, n := range names {
		if err := checks[n](ctx); err != nil {
			status[n] = err.Error()
			code = http.StatusServiceUnavailable
		} else {
			status[n] = "ok"
		}
	}
	writeJSON(w, code, status)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Run serves until ctx is done. With an empty Listen address it only waits.
func (s *Server) Run(ctx context.Context) error {
	if s.cfg.Listen == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("telemetry: listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	s.logger.Info("operational endpoints up", "addr", ln.Addr().String(), "paths", "/metrics /healthz /readyz")
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("telemetry: serve on %s: %w", ln.Addr(), err)
	}
}
