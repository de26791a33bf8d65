package producer

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callstream/callstream/pkg/audit"
	"github.com/callstream/callstream/pkg/sqlitebus"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/pkg/unpodsim"
)

// hidingSource drops from every page the records of one org that hide
// says, keeping the page's count: those calls are never published, as if
// lost, while the API still counts them.
type hidingSource struct {
	Source
	org  string
	hide func(r *unpod.Record) bool
}

func (h hidingSource) CallLogs(ctx context.Context, q unpod.Query) (*unpod.Page, error) {
	pg, err := h.Source.CallLogs(ctx, q)
	if err != nil || q.Org != h.org {
		return pg, err
	}
	kept := pg.Records[:0:0]
	for i := range pg.Records {
		if !h.hide(&pg.Records[i]) {
			kept = append(kept, pg.Records[i])
		}
	}
	out := *pg
	out.Records = kept
	return &out, nil
}

// busLog is the embedded bus's topic as an EventLog, as `callstream run`
// wires it.
type busLog struct {
	bus   *sqlitebus.Bus
	topic string
}

func (l busLog) EndOffsets(ctx context.Context) (map[int]int64, error) {
	return l.bus.EndOffsets(ctx, l.topic)
}

func (l busLog) ReadFrom(ctx context.Context, from map[int]int64, fn func([]byte) error) error {
	return l.bus.ReadRange(ctx, l.topic, from, fn)
}

// TestPeriodicAudit runs the producer on the durable embedded bus against
// the simulator, hiding from it the acme calls created after a point whose
// source number ends in 7, and restarts it once while the hour after its
// lowest frontier is partly published. Every audit of the loop must report,
// per closed hour, the API's count as the simulator's own truth has it and
// exactly the hidden calls as missing (none for globex), and the gauge
// callstream_audit_missing_calls must be their sum; after the restart the
// ledger, rebuilt from the topic, must count the hour published on both
// sides of the restart whole.
func TestPeriodicAudit(t *testing.T) {
	origin := time.Now().UTC()
	clock := NewSimClock(600, origin)
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Clock, sc.Incidents = []string{"acme", "globex"}, "tok", clock.Now, nil
	sc.Start, sc.CallsPerMinute, sc.DailyShape = origin.Add(-3*time.Hour), 3, false
	// Nothing appears after the last rescan: what the producer misses is
	// only what the test hides.
	sc.LateRecords, sc.PageShifts, sc.InvalidRecords, sc.Faults = 0, 0, 0, unpodsim.Faults{}
	sim, url := startSim(t, sc)
	hideFrom := origin.Add(-90 * time.Minute)
	hidden := func(r *unpod.Record) bool {
		return !r.CreationTime.Before(hideFrom) && strings.HasSuffix(r.SourceNumber, "7")
	}
	src := hidingSource{Source: newClient(t, url, "tok"), org: "acme", hide: hidden}

	dir := t.TempDir()
	ctx := context.Background()
	bus, err := sqlitebus.Open(ctx, sqlitebus.Config{Path: filepath.Join(dir, "bus.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	pub := bus.Publisher()
	defer pub.Close()

	var mu sync.Mutex
	last := map[string][]audit.Row{}
	audits := map[string]int{}
	start := func(runCtx context.Context, reg *prometheus.Registry) (*Producer, chan error) {
		cfg := DefaultConfig()
		cfg.SimClock, cfg.Lookback, cfg.RescanAges = clock.String(), 3*time.Hour, []time.Duration{0, 30 * time.Minute}
		cfg.AuditInterval = 20 * time.Minute // 2 s of wall time
		p, err := New(cfg, Deps{Source: src, Publisher: pub, Topic: "calls", DLQTopic: "dlq",
			Store: NewFileStore(filepath.Join(dir, "state.json")), EventLog: busLog{bus, "calls"}, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		p.audit.onAudit = func(org string, rows []audit.Row) {
			mu.Lock()
			defer mu.Unlock()
			last[org], audits[org] = rows, audits[org]+1
		}
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx) }()
		return p, done
	}
	lowAndRung0 := func(p *Producer) (time.Time, time.Time, bool) {
		p.mu.Lock()
		defer p.mu.Unlock()
		cp, ok := p.cps["acme"]
		if !ok {
			return time.Time{}, time.Time{}, false
		}
		return cp.Low(), cp.Rungs[0].Frontier, true
	}
	check := func(reg *prometheus.Registry, phase string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		for _, org := range sc.Orgs {
			var sum float64
			for _, r := range last[org] {
				truth := sim.GroundTruthWindow(org, r.Window.Start, r.Window.End, clock.Now())
				var want int64
				for i := range truth {
					if org == "acme" && hidden(&truth[i]) {
						want++
					}
				}
				if r.API != int64(len(truth)) || r.Missing() != want || r.Extra() != 0 {
					t.Errorf("%s: %s %s: api %d published %d (missing %d), want api %d and %d missing",
						phase, org, r.Window.Label(), r.API, r.Published, r.Missing(), len(truth), want)
				}
				sum += float64(r.Missing())
			}
			g, err := testutil.GatherAndCount(reg, "callstream_audit_missing_calls")
			if err != nil || g == 0 {
				t.Errorf("%s: the gauge is not exported: %d series, %v", phase, g, err)
			}
			mf, _ := reg.Gather()
			var got float64 = -1
			for _, f := range mf {
				if f.GetName() != "callstream_audit_missing_calls" {
					continue
				}
				for _, m := range f.GetMetric() {
					if m.GetLabel()[0].GetValue() == org {
						got = m.GetGauge().GetValue()
					}
				}
			}
			if got != sum {
				t.Errorf("%s: callstream_audit_missing_calls{org=%q} = %v, want %v", phase, org, got, sum)
			}
		}
	}

	// Run 1: until the lowest frontier and rung 0 are in different hours,
	// so the hour after the lowest frontier is partly published at the stop.
	reg1 := prometheus.NewRegistry()
	ctx1, cancel1 := context.WithCancel(ctx)
	p1, done1 := start(ctx1, reg1)
	deadline := time.Now().Add(60 * time.Second)
	var lowAtStop time.Time
	for {
		if time.Now().After(deadline) {
			t.Fatal("run 1: no audit with a hidden call in time")
		}
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		n := audits["acme"]
		hiddenSeen := false
		for _, r := range last["acme"] {
			hiddenSeen = hiddenSeen || r.Missing() > 0
		}
		mu.Unlock()
		low, rung0, ok := lowAndRung0(p1)
		if ok && n > 0 && hiddenSeen && rung0.Truncate(time.Hour).After(low) {
			cancel1()
			lowAtStop = low
			break
		}
	}
	if err := <-done1; err != nil {
		t.Fatal(err)
	}
	check(reg1, "run 1")
	if len(last["globex"]) < 1 {
		t.Fatalf("run 1: globex audited %d hours", len(last["globex"]))
	}

	// Run 2: its ledger starts at the hour after lowAtStop, whose calls
	// were partly published by run 1 and come back from the topic.
	floor := lowAtStop.Truncate(time.Hour).Add(time.Hour)
	mu.Lock()
	clear(last)
	clear(audits)
	mu.Unlock()
	reg2 := prometheus.NewRegistry()
	ctx2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	_, done2 := start(ctx2, reg2)
	deadline = time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("run 2: the hour %s was not audited in time", floor)
		}
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		rows := last["acme"]
		mu.Unlock()
		if len(rows) >= 2 && rows[0].Window.Start.Equal(floor) {
			break
		}
		if len(rows) > 0 && !rows[0].Window.Start.Equal(floor) {
			t.Fatalf("run 2 audited from %s, want from %s (the first hour its ledger holds whole)", rows[0].Window.Start, floor)
		}
	}
	cancel2()
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
	check(reg2, "run 2")
}

func TestAuditConfig(t *testing.T) {
	for _, c := range []struct {
		name     string
		interval time.Duration
		span     time.Duration
		want     string
	}{
		{"defaults", time.Hour, 24 * time.Hour, ""},
		{"off", 0, 0, ""},
		{"negative interval", -time.Second, 24 * time.Hour, "audit_interval"},
		{"span under an hour", time.Hour, 30 * time.Minute, "audit_span"},
	} {
		cfg := DefaultConfig()
		cfg.AuditInterval, cfg.AuditSpan = c.interval, c.span
		err := cfg.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}
}

// TestAuditLedger: the first hour counted whole is the one starting at or
// after the floor; calls are counted per hour of creation time.
func TestAuditLedger(t *testing.T) {
	p := &Producer{cfg: Config{AuditInterval: time.Hour}}
	h := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		floor     time.Time
		wantFirst time.Time
	}{
		{h, h},
		{h.Add(time.Nanosecond), h.Add(time.Hour)},
		{h.Add(59 * time.Minute), h.Add(time.Hour)},
	}
	for i, c := range cases {
		org := fmt.Sprintf("org%d", i)
		p.audit.setFloor(org, c.floor)
		p.audit.setFloor(org, c.floor.Add(-5*time.Hour)) // the first floor stays
		for _, at := range []time.Time{h.Add(-time.Nanosecond), h, h.Add(59 * time.Minute), h.Add(time.Hour), h.Add(2 * time.Hour)} {
			auditPublished(p, org, at)
		}
		auditPublished(p, []byte(org), h.Add(time.Hour+time.Second))
		for _, hr := range []time.Time{h.Add(-time.Hour), h, h.Add(time.Hour), h.Add(2 * time.Hour)} {
			n, whole := p.audit.published(org, hr)
			wantWhole := !hr.Before(c.wantFirst)
			want := map[time.Time]int64{h: 2, h.Add(time.Hour): 2, h.Add(2 * time.Hour): 1}[hr]
			if whole != wantWhole || (whole && n != want) {
				t.Errorf("floor %s, hour %s: %d (whole %v), want %d (whole %v)", c.floor, hr, n, whole, want, wantWhole)
			}
		}
	}
	p.audit.prune("org0", h.Add(time.Hour))
	if n, _ := p.audit.published("org0", h); n != 0 {
		t.Errorf("hour %s kept after the prune: %d", h, n)
	}
	off := &Producer{}
	auditPublished(off, "acme", h)
	if off.audit.hours != nil {
		t.Error("the ledger counts with the audit off")
	}
}
