// Package telemetry gives every callstream process the same operational
// surface: structured logs (log/slog), a Prometheus registry, and one HTTP
// listener serving /metrics, /healthz (the process is alive) and /readyz (its
// bus and sources answer), plus whatever else is mounted on it with
// Server.Handle (the status page). Components register metrics on the
// registry and readiness checks on the server instead of building their own.
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
	"net/url"
	"os"
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
	Format string `yaml:"format" env:"CALLSTREAM_LOG_FORMAT" flag:"log-format" doc:"Log format: auto (text on a terminal, JSON otherwise), json or text."`
	Level  string `yaml:"level" env:"CALLSTREAM_LOG_LEVEL" flag:"log-level" doc:"Log level: debug, info, warn or error."`
}

// DefaultLogConfig logs at info level, text on a terminal and JSON
// otherwise (a container, a pipe into a log collector).
func DefaultLogConfig() LogConfig { return LogConfig{Format: "auto", Level: "info"} }

// NewLogger builds a logger writing to w.
func NewLogger(w io.Writer, cfg LogConfig) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("telemetry: log level %q: want debug, info, warn or error", cfg.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	format := strings.ToLower(cfg.Format)
	if format == "auto" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	switch format {
	case "json", "":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("telemetry: log format %q: want auto, json or text", cfg.Format)
	}
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
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
	Listen string `yaml:"listen" env:"CALLSTREAM_HTTP_LISTEN" flag:"http-listen" doc:"Address of the listener serving the status page (/), /metrics, /healthz and /readyz; empty disables it."`
	// ExternalURL is where people reach the listener, which may differ from
	// Listen behind a proxy or in a cluster: links sent out of the process
	// (the Alertmanager generatorURL of an alert) are built on it.
	ExternalURL string `yaml:"external_url" env:"CALLSTREAM_EXTERNAL_URL" flag:"external-url" doc:"URL at which operators reach this listener (its status page); alert links such as the Alertmanager generatorURL point there. Empty means http://<listen address>."`
}

// DefaultHTTPConfig listens on 127.0.0.1:9464.
func DefaultHTTPConfig() HTTPConfig { return HTTPConfig{Listen: "127.0.0.1:9464"} }

// Validate reports an external URL that is not an absolute http(s) URL.
func (c HTTPConfig) Validate() error {
	if c.ExternalURL == "" {
		return nil
	}
	u, err := url.Parse(c.ExternalURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("telemetry: http.external_url %q: want an absolute http(s) URL such as https://callstream.example.com", c.ExternalURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("telemetry: http.external_url %q: want no query or fragment (links append /#alert-<id>)", c.ExternalURL)
	}
	return nil
}

// BaseURL is the external URL without a trailing slash, or, when none is
// configured, http://<listen address>, with an unspecified host (":9464",
// "0.0.0.0:9464") written as localhost. It is empty when the listener is
// disabled and no external URL is set.
func (c HTTPConfig) BaseURL() string {
	if c.ExternalURL != "" {
		return strings.TrimRight(c.ExternalURL, "/")
	}
	if c.Listen == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return "http://" + c.Listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Check reports whether one dependency is ready; nil means ready.
type Check func(ctx context.Context) error

// Server serves /metrics, /healthz, /readyz and the handlers mounted with
// Handle.
type Server struct {
	cfg    HTTPConfig
	reg    *prometheus.Registry
	logger *slog.Logger
	mux    *http.ServeMux

	mu       sync.Mutex
	checks   map[string]Check
	reports  map[string]func() any
	patterns []string
}

// NewServer builds the operational server for reg.
func NewServer(cfg HTTPConfig, reg *prometheus.Registry, logger *slog.Logger) *Server {
	s := &Server{cfg: cfg, reg: reg, logger: logger, checks: map[string]Check{}, mux: http.NewServeMux(),
		patterns: []string{"/metrics", "/healthz", "/readyz"}}
	s.mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	s.mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("/readyz", s.ready)
	return s
}

// Handle mounts h at pattern (http.ServeMux syntax, e.g. "/{$}" for the
// root alone) beside the built-in endpoints, so other packages can serve on
// the one operational listener. Like http.ServeMux.Handle it panics when
// pattern is invalid or conflicts with one already mounted: that is a
// programming error, never input. Call it before Run or Serve.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.mu.Lock()
	s.patterns = append(s.patterns, pattern)
	s.mu.Unlock()
}

// AddReadiness registers a named readiness check; /readyz answers 200 only
// when every check passes.
func (s *Server) AddReadiness(name string, check Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = check
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler { return s.mux }

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
	status, code := map[string]any{}, http.StatusOK
	for _, n := range names {
		if err := checks[n](ctx); err != nil {
			status[n] = err.Error()
			code = http.StatusServiceUnavailable
		} else {
			status[n] = "ok"
		}
	}
	s.mu.Lock()
	reports := make(map[string]func() any, len(s.reports))
	for n, rep := range s.reports {
		reports[n] = rep
	}
	s.mu.Unlock()
	for n, rep := range reports {
		if _, taken := status[n]; !taken {
			status[n] = rep()
		}
	}
	writeJSON(w, code, status)
}

// AddReport adds an entry to the /readyz body that informs and never
// fails the check: what a producer polls and how each source answers, say.
func (s *Server) AddReport(name string, report func() any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reports == nil {
		s.reports = map[string]func() any{}
	}
	s.reports[name] = report
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

// Serve serves on ln until ctx is done. Requests see ctx's cancellation, so
// long-lived responses (server-sent events) end when the server stops
// instead of holding the shutdown up.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	s.mu.Lock()
	paths := strings.Join(s.patterns, " ")
	s.mu.Unlock()
	s.logger.Info("operational endpoints up", "addr", ln.Addr().String(), "paths", paths)
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
