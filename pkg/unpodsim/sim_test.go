package unpodsim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callstream/callstream/pkg/unpod"
)

var t0 = time.Date(2026, 2, 7, 12, 0, 0, 0, time.UTC)

// fakeClock is a settable clock; step, when set, advances it on every read.
type fakeClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.now
	c.now = c.now.Add(c.step)
	return t
}

func (c *fakeClock) Set(t time.Time, step time.Duration) {
	c.mu.Lock()
	c.now, c.step = t, step
	c.mu.Unlock()
}

// testConfig is DefaultConfig on a fake clock at t0 with two hours of
// history and no incidents.
func testConfig(clock *fakeClock) Config {
	cfg := DefaultConfig()
	cfg.Clock = clock.Now
	cfg.Start = t0.Add(-2 * time.Hour)
	cfg.Incidents = nil
	cfg.CallsPerMinute = 30
	return cfg
}

// start serves sim on a real 127.0.0.1 listener for the test's lifetime.
func start(t testing.TB, sim *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func newSim(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	sim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sim, start(t, sim)
}

func client(t testing.TB, url, token string) *unpod.Client {
	t.Helper()
	c, err := unpod.New(unpod.Config{
		BaseURL: url, Token: token, RateLimit: -1, Timeout: 2 * time.Second, MaxRetryTime: 20 * time.Second,
		InitialBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func raws(recs []unpod.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Raw)
	}
	return out
}

func TestPagesMatchGroundTruth(t *testing.T) {
	clock := &fakeClock{now: t0}
	sim, url := newSim(t, testConfig(clock))
	c := client(t, url, DefaultToken)
	all := sim.GroundTruthWindow("acme", t0.Add(-50*time.Minute), t0.Add(-10*time.Minute), t0)
	if len(all) < 800 {
		t.Fatalf("only %d calls in 40 minutes at 30/min", len(all))
	}
	// Bounds on existing creation times prove [start, end): the record at
	// from is in, the one at to is out.
	from, to := all[len(all)-10].CreationTime, all[9].CreationTime
	truth := sim.GroundTruthWindow("acme", from, to, t0)
	if len(truth) == 0 || !truth[len(truth)-1].CreationTime.Equal(from) || truth[0].CreationTime.Equal(to) {
		t.Fatalf("window bounds not [start, end)")
	}
	w, err := c.ReadWindow(context.Background(), unpod.Query{Org: "acme", PageSize: 7, Start: from, End: to})
	if err != nil {
		t.Fatal(err)
	}
	if w.CountChanged || w.Count != len(truth) || w.Pages != (len(truth)+6)/7 || len(w.Invalid) != 0 {
		t.Fatalf("read %d pages, count %d, changed %v, invalid %d; truth has %d", w.Pages, w.Count, w.CountChanged, len(w.Invalid), len(truth))
	}
	if !slices.Equal(raws(w.Records), raws(truth)) {
		t.Fatal("served records differ from ground truth")
	}
	if d := diffRecords(truth, w.Records); len(d) > 0 {
		t.Fatalf("decoded records differ from ground truth in %d fields, e.g. %s", len(d), d[0])
	}
	for i := 1; i < len(w.Records); i++ {
		if w.Records[i].CreationTime.After(w.Records[i-1].CreationTime) {
			t.Fatalf("record %d is newer than record %d: not newest first", i, i-1)
		}
	}
	// Default page size is 20.
	p, err := c.CallLogs(context.Background(), unpod.Query{Org: "acme", Start: from, End: to})
	if err != nil || len(p.Records) != 20 || p.Count != len(truth) {
		t.Fatalf("default page: %d records, count %d, err %v", len(p.Records), p.Count, err)
	}
}

func TestDeterministic(t *testing.T) {
	gt := func(seed uint64) []string {
		cfg := testConfig(&fakeClock{now: t0})
		cfg.Seed = seed
		sim, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return raws(sim.GroundTruthWindow("globex", t0.Add(-time.Hour), t0, t0))
	}
	a, b, c := gt(7), gt(7), gt(8)
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Fatal("same seed, different calls")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds, same calls")
	}
}

func TestAuthAndBadRequests(t *testing.T) {
	cfg := testConfig(&fakeClock{now: t0})
	cfg.Tokens = map[string][]string{"acme-only": {"acme"}}
	_, url := newSim(t, cfg)
	ctx := context.Background()
	tests := []struct {
		name, token, org string
		want             error
	}{
		{"bad token", "wrong", "acme", unpod.ErrUnauthorized},
		{"org not allowed", "acme-only", "globex", unpod.ErrForbidden},
		{"unknown org", DefaultToken, "nosuch", unpod.ErrNotFound},
		{"allowed", "acme-only", "acme", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client(t, url, tt.token).CallLogs(ctx, unpod.Query{Org: tt.org})
			if !errors.Is(err, tt.want) && (err != nil || tt.want != nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	orgs, err := client(t, url, "acme-only").Organizations(ctx)
	if err != nil || len(orgs) != 1 || orgs[0].Handle != "acme" {
		t.Fatalf("organizations for acme-only = %+v, %v", orgs, err)
	}
	orgs, err = client(t, url, DefaultToken).Organizations(ctx)
	if err != nil || len(orgs) != 3 {
		t.Fatalf("organizations for the default token = %+v, %v", orgs, err)
	}
	for _, q := range []string{"page=0", "page=x", "page_size=-1", "start_date=yesterday", "end_date=2026-13-01", "call_type=sideways", "call_status=ringing"} {
		req, _ := http.NewRequest("GET", url+unpod.CallLogsPath+"?"+q, nil)
		req.Header.Set("Authorization", "Token "+DefaultToken)
		req.Header.Set("Org-Handle", "acme")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, resp.StatusCode)
		}
	}
}

func TestFilters(t *testing.T) {
	sim, url := newSim(t, testConfig(&fakeClock{now: t0}))
	c := client(t, url, DefaultToken)
	from, to := t0.Add(-90*time.Minute), t0
	truth := sim.GroundTruthWindow("initech", from, to, t0)
	tests := []struct {
		typ, status string
		keep        func(unpod.Record) bool
	}{
		{"inbound", "", func(r unpod.Record) bool { return r.CallType == "inbound" }},
		{"outbound", "", func(r unpod.Record) bool { return r.CallType == "outbound" }},
		{"", "missed", func(r unpod.Record) bool { return r.CallStatus == "missed" }},
		{"", "no-answer", func(r unpod.Record) bool { return r.CallStatus == "missed" }},
		{"outbound", "failed", func(r unpod.Record) bool { return r.CallType == "outbound" && r.CallStatus == "failed" }},
		{"", "completed", func(r unpod.Record) bool { return r.CallStatus == "completed" }},
	}
	for _, tt := range tests {
		w, err := c.ReadWindow(context.Background(), unpod.Query{Org: "initech", PageSize: 50, Start: from, End: to, CallType: tt.typ, CallStatus: tt.status})
		if err != nil {
			t.Fatal(err)
		}
		want := slices.DeleteFunc(slices.Clone(truth), func(r unpod.Record) bool { return !tt.keep(r) })
		if len(want) == 0 || !slices.Equal(raws(w.Records), raws(want)) {
			t.Errorf("type %q status %q: %d records, want %d", tt.typ, tt.status, len(w.Records), len(want))
		}
	}
}

// key identifies a call across versions the way the producer does.
func key(r unpod.Record) string {
	return strings.Join([]string{r.SourceNumber, r.DestinationNumber, r.CallType, r.CreationTime.Format(time.RFC3339Nano)}, "|")
}

func TestLateRecordsAndUpdates(t *testing.T) {
	clock := &fakeClock{}
	cfg := testConfig(clock)
	cfg.LateRecords, cfg.Updates, cfg.PageShifts = 0.3, 0.3, 0.1
	sim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	from, to := t0.Add(-10*time.Minute), t0
	early := sim.GroundTruthWindow("acme", from, to, t0)
	late := sim.GroundTruthWindow("acme", from, to, t0.Add(2*time.Hour))
	if settled := sim.GroundTruthWindow("acme", from, to, to.Add(sim.MaxLateness())); !slices.Equal(raws(settled), raws(late)) {
		t.Fatal("records still changed after MaxLateness")
	}
	byKey := map[string]unpod.Record{}
	for _, r := range early {
		byKey[key(r)] = r
	}
	appeared, changed, statusChanged := 0, 0, 0
	for _, r := range late {
		prev, ok := byKey[key(r)]
		switch {
		case !ok:
			appeared++
		case string(prev.Raw) != string(r.Raw):
			changed++
			if prev.CallStatus != r.CallStatus {
				statusChanged++
			}
		}
	}
	if appeared < 10 || changed < 10 || statusChanged == 0 || len(late) != len(early)+appeared {
		t.Fatalf("between t0 and t0+2h: %d appeared, %d changed (%d status), %d -> %d records", appeared, changed, statusChanged, len(early), len(late))
	}

	// Switched off, nothing moves.
	cfg.LateRecords, cfg.Updates, cfg.PageShifts = 0, 0, 0
	sim, _ = New(cfg)
	if a, b := sim.GroundTruthWindow("acme", from, to, t0), sim.GroundTruthWindow("acme", from, to, t0.Add(2*time.Hour)); !slices.Equal(raws(a), raws(b)) {
		t.Fatal("records changed with late records, updates and page shifts off")
	}
}

func TestVariants(t *testing.T) {
	count := func(cfg Config) map[string]int {
		sim, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, r := range sim.GroundTruthWindow("acme", t0.Add(-2*time.Hour), t0, t0) {
			s := string(r.Raw)
			for name, sub := range map[string]string{
				"hms": `"call_duration":"`, "int": `"call_duration":0`, "id": `"id":`, "bridge": `"bridge":`,
				"millis": `.`, "no-answer": `"call_status":"no-answer"`, "no_answer": `"call_status":"no_answer"`,
				"missed": `"call_status":"missed"`, "failed": `"call_status":"failed"`,
			} {
				if strings.Contains(s, sub) {
					n[name]++
				}
			}
			if strings.Contains(s, `"call_duration":`) && !strings.Contains(s, `"call_duration":"`) {
				n["int"]++
			}
		}
		return n
	}
	on := testConfig(&fakeClock{now: t0})
	n := count(on)
	for _, k := range []string{"hms", "int", "id", "bridge", "millis", "no-answer", "no_answer", "missed", "failed"} {
		if n[k] == 0 {
			t.Errorf("no record with %s in %v", k, n)
		}
	}
	off := on
	off.DurationFormats, off.IDPresent, off.ExtraFields, off.NoAnswer, off.MillisTimes = "int", 0, false, 0, 0
	n = count(off)
	for _, k := range []string{"hms", "id", "bridge", "millis", "no-answer", "no_answer"} {
		if n[k] != 0 {
			t.Errorf("%d records with %s when switched off", n[k], k)
		}
	}
}

func TestIncidents(t *testing.T) {
	cfg := testConfig(&fakeClock{now: t0})
	cfg.CallsPerMinute = 60
	cfg.Incidents = []Incident{
		{Kind: MissedSpike, Org: "acme", Start: t0.Add(-60 * time.Minute), Duration: 10 * time.Minute, Intensity: 0.8, RateFactor: 2},
		{Kind: FailedBurst, After: -30 * time.Minute, Duration: 5 * time.Minute, Intensity: 0.7},
	}
	sim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	share := func(org, status string, from, to time.Time) (float64, int) {
		recs := sim.GroundTruthWindow(org, from, to, t0.Add(time.Hour))
		n := 0
		for _, r := range recs {
			if r.CallStatus == status {
				n++
			}
		}
		return float64(n) / float64(len(recs)), len(recs)
	}
	in, nIn := share("acme", "missed", t0.Add(-60*time.Minute), t0.Add(-50*time.Minute))
	out, nOut := share("acme", "missed", t0.Add(-80*time.Minute), t0.Add(-70*time.Minute))
	if in < 0.7 || out > 0.3 || nIn < nOut*3/2 {
		t.Errorf("acme missed share %.2f (%d calls) during the spike, %.2f (%d calls) before", in, nIn, out, nOut)
	}
	if other, _ := share("globex", "missed", t0.Add(-60*time.Minute), t0.Add(-50*time.Minute)); other > 0.3 {
		t.Errorf("the acme spike hit globex: missed share %.2f", other)
	}
	in, _ = share("globex", "failed", t0.Add(-30*time.Minute), t0.Add(-25*time.Minute))
	out, _ = share("globex", "failed", t0.Add(-20*time.Minute), t0.Add(-15*time.Minute))
	if in < 0.6 || out > 0.2 {
		t.Errorf("failed share %.2f during the burst, %.2f after", in, out)
	}
}

// TestClientSurvivesAllFaults is the acceptance test: with every
// fault and every messy part on, the client reads a settled window and gets
// exactly the ground truth; then, with the clock moving on every request so
// that pages shift, the pager notices and a final read still matches.
func TestClientSurvivesAllFaults(t *testing.T) {
	clock := &fakeClock{now: t0}
	cfg := testConfig(clock)
	cfg.Seed = 42
	cfg.LateRecords, cfg.Updates, cfg.PageShifts = 0.3, 0.2, 0.1
	cfg.InvalidRecords = 0.02
	cfg.Faults = ChaosFaults()
	cfg.Faults.Throttle429, cfg.Faults.SlowDelay = 0.03, 20*time.Millisecond
	var simLogs, clientLogs lockedBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&simLogs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	sim, url := newSim(t, cfg)
	c, err := unpod.New(unpod.Config{
		BaseURL: url, Token: DefaultToken, RateLimit: -1, Timeout: 2 * time.Second, MaxRetryTime: 20 * time.Second,
		InitialBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&clientLogs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	defer func() {
		for name, logs := range map[string]string{"simulator": simLogs.String(), "client": clientLogs.String()} {
			if !strings.Contains(logs, "fault") && !strings.Contains(logs, "retrying") {
				t.Errorf("%s logged nothing useful", name)
			}
			if strings.Contains(logs, DefaultToken) {
				t.Errorf("token in the %s's logs", name)
			}
		}
	}()

	from, to := t0.Add(-90*time.Minute), t0.Add(-30*time.Minute)
	w, err := c.ReadWindow(ctx, unpod.Query{Org: "acme", PageSize: 100, Start: from, End: to})
	if err != nil {
		t.Fatal(err)
	}
	truth := sim.GroundTruthWindow("acme", from, to, t0)
	if !slices.Equal(raws(w.Records), raws(truth)) {
		t.Fatalf("read %d records, ground truth has %d", len(w.Records), len(truth))
	}
	if inv := sim.InvalidCount("acme", from, to, t0); len(w.Invalid) != inv || inv == 0 || w.Count != len(truth)+inv {
		t.Fatalf("%d invalid records reported, simulator served %d; count %d", len(w.Invalid), inv, w.Count)
	}

	// Live: the window reaches the present and the clock moves 5 s per
	// request, so records appear and change between pages.
	from, to = t0.Add(-20*time.Minute), t0.Add(time.Hour)
	clock.Set(t0, 5*time.Second)
	shifted := false
	for i := 0; i < 5 && !shifted; i++ {
		w, err = c.ReadWindow(ctx, unpod.Query{Org: "acme", PageSize: 50, Start: from, End: to})
		if err != nil {
			t.Fatal(err)
		}
		shifted = w.CountChanged
	}
	if !shifted {
		t.Fatal("pages shifted under the pager but it never reported a count change")
	}
	for _, kind := range []string{"500", "429", "slow", "malformed", "reset"} {
		if sim.Faults()[kind] == 0 {
			t.Errorf("no %s fault injected: %v", kind, sim.Faults())
		}
	}
	if n := testutil.ToFloat64(sim.injected.WithLabelValues("reset")); int(n) != sim.Faults()["reset"] {
		t.Errorf("faults metric %v, Faults() %v", n, sim.Faults())
	}
	if n := testutil.ToFloat64(sim.served.WithLabelValues("acme")); n < float64(len(truth)) {
		t.Errorf("records served metric %v < %d records read", n, len(truth))
	}
	if _, err := reg.Gather(); err != nil {
		t.Error(err)
	}
	stop := clock.Now().Add(time.Hour)
	clock.Set(stop, 0)
	w, err = c.ReadWindow(ctx, unpod.Query{Org: "acme", PageSize: 100, Start: from, End: to})
	if err != nil {
		t.Fatal(err)
	}
	if truth := sim.GroundTruthWindow("acme", from, to, stop); w.CountChanged || !slices.Equal(raws(w.Records), raws(truth)) {
		t.Fatalf("settled read: %d records (changed %v), ground truth %d", len(w.Records), w.CountChanged, len(truth))
	}
}

func TestListenAndServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sim, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.ListenAndServe(ctx, addr) }()
	var resp *http.Response
	for i := 0; i < 100; i++ {
		if resp, err = http.Get("http://" + addr + "/healthz"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok\n" {
		t.Fatalf("healthz = %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ListenAndServe after cancel: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	bad := []func(*Config){
		func(c *Config) { c.LateRecords = 1.5 },
		func(c *Config) { c.Orgs = nil },
		func(c *Config) { c.DurationFormats = "roman" },
		func(c *Config) { c.Faults.Error500, c.Faults.Reset = 0.7, 0.7 },
		func(c *Config) { c.Incidents = []Incident{{Kind: "flood", Duration: time.Minute}} },
		func(c *Config) { c.Token, c.Tokens = "", nil },
	}
	for i, mutate := range bad {
		cfg := DefaultConfig()
		mutate(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("bad config %d accepted", i)
		}
	}
}

func TestScaledClock(t *testing.T) {
	clock := ScaledClock(t0, 100)
	a := clock()
	time.Sleep(20 * time.Millisecond)
	// 20 ms at 100x is at least 2 s; a starts at t0 (300 ms of wall-clock
	// slack for a loaded machine).
	if d := clock().Sub(a); d < 2*time.Second || a.Before(t0) || a.After(t0.Add(30*time.Second)) {
		t.Fatalf("20ms at 100x moved the clock %s from %s", d, a)
	}
}

// lockedBuffer is a bytes.Buffer that the server's goroutines and the test
// may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestGenerationStable pins the generator's output for one seed and hour.
// Other packages' tests (alerting thresholds, producer chaos runs) are tuned
// on this traffic: a change here must be deliberate, and announced.
func TestGenerationStable(t *testing.T) {
	sim, err := New(testConfig(&fakeClock{now: t0}))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, r := range sim.GroundTruthWindow("acme", t0.Add(-time.Hour), t0, t0) {
		h.Write(r.Raw)
	}
	const want = "326345bf80d9e56a"
	if got := hex.EncodeToString(h.Sum(nil))[:16]; got != want {
		t.Fatalf("generator output changed: digest %s, want %s", got, want)
	}
}
