package unpodsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Server is a simulated Unpod API. Create it with New; serve it with Serve,
// ListenAndServe or Handler. It is safe for concurrent use.
type Server struct {
	cfg    Config
	gen    generator
	now    func() time.Time
	start  time.Time
	orgsMu sync.RWMutex
	orgs   map[string]bool            // under orgsMu: AddOrg and RemoveOrg change it
	tokens map[string]map[string]bool // token -> orgs; "*" inside means all
	log    *slog.Logger

	cacheMu    sync.RWMutex
	cache      map[cacheKey][]*call
	cachedRecs int

	listings listings  // recent call-logs listings, for paging
	bufs     sync.Pool // *bytes.Buffer for page bodies

	requests *prometheus.CounterVec
	served   *prometheus.CounterVec
	injected *prometheus.CounterVec

	faultMu  sync.Mutex
	faultRng *rand.Rand
	faults   map[string]int // injected so far, by kind; under faultMu

	reqMu sync.Mutex
	reqs  []Request // with Config.RecordRequests
}

type cacheKey struct {
	org    string
	minute int64
}

// maxCachedCalls bounds the generation cache (about 800 bytes a call with
// its rendered JSON and the values it was rendered from, so 200 MB at
// most); past it the cache starts over, which costs only regeneration.
const maxCachedCalls = 250_000

// New returns a simulator for cfg. Zero durations and a zero MaxPageSize
// take DefaultConfig values.
func New(cfg Config) (*Server, error) {
	d := DefaultConfig()
	if cfg.LateDelayMax <= 0 {
		cfg.LateDelayMax = d.LateDelayMax
	}
	if cfg.UpdateDelayMax <= 0 {
		cfg.UpdateDelayMax = d.UpdateDelayMax
	}
	if cfg.ShiftSpread <= 0 {
		cfg.ShiftSpread = d.ShiftSpread
	}
	if cfg.MaxPageSize <= 0 {
		cfg.MaxPageSize = d.MaxPageSize
	}
	if cfg.Faults.RetryAfter <= 0 {
		cfg.Faults.RetryAfter = d.Faults.RetryAfter
	}
	if cfg.Faults.SlowDelay <= 0 {
		cfg.Faults.SlowDelay = d.Faults.SlowDelay
	}
	if cfg.History <= 0 {
		cfg.History = d.History
	}
	if cfg.DurationFormats == "" {
		cfg.DurationFormats = "mixed"
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("unpodsim: config: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		now:      cfg.Clock,
		orgs:     map[string]bool{},
		tokens:   map[string]map[string]bool{},
		log:      cfg.Logger,
		cache:    map[cacheKey][]*call{},
		faultRng: rand.New(rand.NewPCG(cfg.Seed, 0xfa17)),
		faults:   map[string]int{},
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.initMetrics(cfg.Registerer); err != nil {
		return nil, err
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, o := range cfg.Orgs {
		if o = strings.TrimSpace(o); o != "" {
			s.orgs[o] = true
		}
	}
	addToken := func(tok string, orgs []string) {
		if tok == "" {
			return
		}
		if s.tokens[tok] == nil {
			s.tokens[tok] = map[string]bool{}
		}
		for _, o := range orgs {
			s.tokens[tok][o] = true
		}
	}
	addToken(cfg.Token, []string{"*"})
	for tok, orgs := range cfg.Tokens {
		addToken(tok, orgs)
	}
	if len(s.tokens) == 0 {
		return nil, errors.New("unpodsim: config: no tokens")
	}
	startedAt := s.now().UTC()
	s.start = cfg.Start.UTC()
	if s.start.IsZero() {
		s.start = startedAt.Add(-cfg.History)
	}
	s.gen = generator{cfg: cfg, startedAt: startedAt}
	return s, nil
}

// Start returns the creation time of the oldest call the simulator has.
func (s *Server) Start() time.Time { return s.start }

// MaxLateness bounds how long after its creation_time a call's record can
// still appear or change: the longest call (one hour plus ringing) plus the
// largest configured delay. A window older than this is settled; a test
// that waits this long on the simulator's clock sees ground truth final.
func (s *Server) MaxLateness() time.Duration {
	d := max(s.cfg.LateDelayMax, s.cfg.UpdateDelayMax)
	return max(maxCallSpan+5*time.Second+d, s.cfg.ShiftSpread)
}

// Now returns the simulator's clock.
func (s *Server) Now() time.Time { return s.now().UTC() }

// Orgs returns the organization handles served, sorted.
func (s *Server) Orgs() []string {
	s.orgsMu.RLock()
	defer s.orgsMu.RUnlock()
	out := make([]string, 0, len(s.orgs))
	for o := range s.orgs {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// Faults returns how many faults of each kind ("500", "429", "slow",
// "malformed", "reset") the simulator has injected.
func (s *Server) Faults() map[string]int {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	out := make(map[string]int, len(s.faults))
	for k, v := range s.faults {
		out[k] = v
	}
	return out
}

// Handler returns the API's HTTP handler: both endpoints (with or without
// the trailing slash) and /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	logs, orgs := s.counted("call_logs", s.serveCallLogs), s.counted("organizations", s.serveOrganizations)
	mux.HandleFunc("GET /api/v2/platform/call-logs/", logs)
	mux.HandleFunc("GET /api/v2/platform/call-logs", logs)
	mux.HandleFunc("GET /api/v2/platform/organizations/", orgs)
	mux.HandleFunc("GET /api/v2/platform/organizations", orgs)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	return mux
}

// Serve serves the API on ln until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	defer close(done)
	s.log.Info("unpod simulator serving", "addr", ln.Addr().String(), "orgs", s.Orgs(), "seed", s.cfg.Seed)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("unpodsim: serve on %s: %w", ln.Addr(), err)
	}
	return nil
}

// Listen listens on addr ("127.0.0.1:0" picks a free loopback port) and
// serves in the background until ctx is done. It returns the base URL to
// point a client at, and wait, which blocks until the server has stopped
// and returns its error: embedded mode and tests run the simulator this way.
func (s *Server) Listen(ctx context.Context, addr string) (url string, wait func() error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("unpodsim: listen on %s: %w", addr, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	return "http://" + ln.Addr().String(), func() error { return <-errc }, nil
}

// ListenAndServe listens on addr (Config.Listen when empty) and serves
// until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	if addr == "" {
		addr = s.cfg.Listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("unpodsim: listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// calls returns org's calls created in minute m, from the cache or freshly
// generated.
func (s *Server) calls(org string, m int64) []*call {
	k := cacheKey{org, m}
	s.cacheMu.RLock()
	cs, ok := s.cache[k]
	s.cacheMu.RUnlock()
	if ok {
		return cs
	}
	cs = s.gen.generate(org, m)
	s.cacheMu.Lock()
	if s.cachedRecs+len(cs) > maxCachedCalls {
		s.cache, s.cachedRecs = map[cacheKey][]*call{}, 0
	}
	s.cache[k] = cs
	s.cachedRecs += len(cs)
	s.cacheMu.Unlock()
	return cs
}

// filter is a call-logs query as the simulator applies it.
type filter struct {
	from, to   time.Time // creation_time in [from, to)
	now        time.Time // visibility
	callType   string
	callStatus string // normalised
}

// each calls fn for every matching call version, newest first, and stops
// when fn returns false.
func (s *Server) each(org string, f filter, fn func(*call, *version) bool) {
	s.walk(org, f, fn, nil)
}

// walk is each that, when horizon is not nil and fn never stops it, also
// sets *horizon to the earliest clock time after f.now at which the result
// could differ: a matching call's next version, a call created after now in
// a minute it visited, or the next minute when now bounded the window. It
// stays zero when the result is final.
func (s *Server) walk(org string, f filter, fn func(*call, *version) bool, horizon *time.Time) {
	lower := func(t time.Time) {
		if horizon != nil && (horizon.IsZero() || t.Before(*horizon)) {
			*horizon = t
		}
	}
	from := f.from
	if from.Before(s.start) {
		from = s.start
	}
	to, clamped := f.to, false
	if limit := f.now.Add(time.Nanosecond); to.IsZero() || to.After(limit) {
		to, clamped = limit, true // nothing created after now is visible
	}
	if !from.Before(to) {
		if clamped {
			lower(from)
		}
		return
	}
	first := from.Unix() / 60
	if from.Unix() < 0 && from.Unix()%60 != 0 {
		first--
	}
	last := to.Add(-time.Nanosecond).Unix() / 60
	if clamped {
		lower(time.Unix((last+1)*60, 0))
	}
	for m := last; m >= first; m-- {
		cs := s.calls(org, m)
		for i := len(cs) - 1; i >= 0; i-- {
			c := cs[i]
			if c.created.Before(from) {
				continue
			}
			if !c.created.Before(to) {
				if clamped {
					lower(c.created)
				}
				continue
			}
			if f.callType != "" && c.typ != f.callType {
				continue
			}
			v, next := c.current(f.now)
			if !next.IsZero() {
				lower(next)
			}
			if v == nil || (f.callStatus != "" && v.status != f.callStatus) {
				continue
			}
			if !fn(c, v) {
				return
			}
		}
	}
}

func (s *Server) initMetrics(reg prometheus.Registerer) error {
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callstream_unpodsim_requests_total",
		Help: "Requests to the simulated Unpod API, by endpoint and status code.",
	}, []string{"endpoint", "code"})
	s.served = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callstream_unpodsim_records_served_total",
		Help: "Call-log records served, by org.",
	}, []string{"org"})
	s.injected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callstream_unpodsim_faults_total",
		Help: "Faults injected, by kind.",
	}, []string{"kind"})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{s.requests, s.served, s.injected} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("unpodsim: register metrics: %w", err)
		}
	}
	return nil
}

// statusRecorder remembers the status code a handler wrote, for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController and the reset fault reach the
// connection underneath.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) counted(endpoint string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h(rec, r)
		s.requests.WithLabelValues(endpoint, strconv.Itoa(rec.code)).Inc()
	}
}
