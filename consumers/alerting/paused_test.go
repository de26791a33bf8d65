package alerting

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/sqlitebus"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// downSource is the API as the producer sees it, with one org's requests
// failing while down is set.
type downSource struct {
	producer.Source
	org  string
	down atomic.Bool
}

func (s *downSource) CallLogs(ctx context.Context, q unpod.Query) (*unpod.Page, error) {
	if s.down.Load() && q.Org == s.org {
		return nil, errors.New("connection refused")
	}
	return s.Source.CallLogs(ctx, q)
}

// TestOrgPausedAlert runs the real producer and the alerting plug-in on
// one registry, as embedded mode does: while the producer cannot poll
// globex (and so exports callstream_producer_org_paused{org="globex"} 1)
// the org_paused rule fires for globex alone, and it resolves once polls
// succeed again.
func TestOrgPausedAlert(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	simCfg := unpodsim.DefaultConfig()
	simCfg.Orgs, simCfg.Incidents = []string{"acme", "globex"}, nil
	sim, err := unpodsim.New(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	url, wait, err := sim.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = wait() }()
	client, err := unpod.New(unpod.Config{BaseURL: url, Token: unpodsim.DefaultToken, RateLimit: -1, MaxRetryTime: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	src := &downSource{Source: client, org: "globex"}
	src.down.Store(true)

	reg := prometheus.NewRegistry()
	bus, err := sqlitebus.Open(ctx, sqlitebus.Config{Path: filepath.Join(t.TempDir(), "bus.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	pcfg := producer.DefaultConfig()
	pcfg.Orgs, pcfg.PollInterval, pcfg.Lookback = []string{"acme", "globex"}, 100*time.Millisecond, 5*time.Minute
	pcfg.OrgBackoff, pcfg.OrgBackoffMax = 100*time.Millisecond, 200*time.Millisecond
	prod, err := producer.New(pcfg, producer.Deps{Source: src, Publisher: bus.Publisher(), Topic: "calls", DLQTopic: "dlq",
		Store: producer.NewFileStore(filepath.Join(t.TempDir(), "producer.json")), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}

	cfg := testConfig("")
	cfg.Rules = []Rule{DefaultRules()[4]}
	cfg.Rules[0].For, cfg.Rules[0].KeepFiringFor = time.Second, time.Second
	pub := &memPublisher{}
	p, err := New(cfg, consumers.Deps{Registerer: reg, Publisher: pub, Topics: consumers.NewTopics("test.")})
	if err != nil {
		t.Fatal(err)
	}
	p.pausedEvery = 100 * time.Millisecond
	go func() { _ = prod.Run(ctx) }()
	runDone := make(chan struct{})
	go func() { _ = p.Run(ctx); close(runDone) }()
	defer func() { cancel(); <-runDone }()

	states := func() []schemas.AlertEvent { return pub.alerts(t) }
	waitLong(t, "the org-paused alert to fire", func() bool { return len(states()) >= 1 })
	fired := states()[0]
	if fired.State != schemas.AlertFiring || fired.Org != "globex" || fired.Rule != "org-paused" || fired.Value != 1 {
		t.Fatalf("first alert %+v, want org-paused firing for globex", fired)
	}
	time.Sleep(time.Second)
	if got := states(); len(got) != 1 {
		t.Fatalf("alerts while globex is down: %+v, want only its firing (acme polls fine)", got)
	}
	src.down.Store(false)
	waitLong(t, "the org-paused alert to resolve", func() bool { return len(states()) >= 2 })
	if got := states()[1]; got.State != schemas.AlertResolved || got.AlertID != fired.AlertID {
		t.Fatalf("second alert %+v, want the resolution of %s", got, fired.AlertID)
	}
}

// waitLong is waitFor with room for a poll loop and a notifier round.
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPausedNoticeMeasures: an org_paused notice measures the pause alone:
// value and threshold 1, no count and no baseline (-1, as for every rule
// without one).
func TestPausedNoticeMeasures(t *testing.T) {
	cfg := replayConfig()
	e := newEngine(cfg)
	paused := map[string]bool{"acme": true}
	e.ObservePaused(wall, paused)
	e.ObservePaused(wall.Add(cfg.Rules[4].For), paused)
	n := e.TakeNotices()
	if len(n) != 1 || n[0].Kind != KindFiring {
		t.Fatalf("got %v, want org-paused to fire after its for", kinds(n))
	}
	if got := n[0]; got.Baseline != -1 || got.Count != 0 || got.Total != 0 || got.Alert.Value != 1 || got.Alert.Threshold != 1 {
		t.Fatalf("notice baseline %v, count %d of %d, value %v, threshold %v; want -1, 0 of 0, 1, 1",
			got.Baseline, got.Count, got.Total, got.Alert.Value, got.Alert.Threshold)
	}
}
