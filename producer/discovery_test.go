package producer

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/unpodsim"
)

// TestDiscoversOrganizations: with no Org-Handles configured the producer
// asks the API (the simulator's organizations endpoint, through the real
// client) which organizations its token sees, and polls exactly those:
// every settled call of each is published, and the organizations the
// token may not see are never polled (a poll of one would answer 403 and
// show in Sources as paused) nor published.
func TestDiscoversOrganizations(t *testing.T) {
	simCfg := unpodsim.DefaultConfig()
	simCfg.Orgs = []string{"acme", "globex", "initech", "umbrella"}
	simCfg.Tokens = map[string][]string{"two-orgs": {"acme", "initech"}}
	simCfg.History, simCfg.CallsPerMinute, simCfg.Incidents = 20*time.Minute, 10, nil
	simCfg.LateRecords, simCfg.Updates, simCfg.PageShifts, simCfg.InvalidRecords = 0, 0, 0, 0
	sim, url := startSim(t, simCfg)
	discovered := []string{"acme", "initech"}

	cfg := DefaultConfig()
	cfg.Orgs, cfg.Lookback, cfg.SettleLag, cfg.PollInterval = nil, time.Hour, time.Second, 200*time.Millisecond
	cfg.DiscoveryInterval = 200 * time.Millisecond
	bus := &busPublisher{}
	p, err := New(cfg, Deps{Source: newClient(t, url, "two-orgs"), Publisher: bus, Topic: "calls", DLQTopic: "dlq",
		Store: NewFileStore(filepath.Join(t.TempDir(), "s.json")), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	// Calls created a minute before now have settled; each org's must all
	// be published.
	settled := sim.Now().Add(-time.Minute)
	want := map[string]map[string]bool{}
	for _, org := range discovered {
		want[org] = map[string]bool{}
		for _, r := range sim.GroundTruthWindow(org, sim.Start(), settled, sim.Now()) {
			want[org][CallKey(org, &r)] = true
		}
		if len(want[org]) == 0 {
			t.Fatalf("the simulator has no calls of %s: the case tests nothing", org)
		}
	}
	var got map[string]map[string]bool
	deadline := time.Now().Add(30 * time.Second)
	for {
		got = map[string]map[string]bool{}
		for _, e := range bus.events(t, "calls") {
			if got[e.Org] == nil {
				got[e.Org] = map[string]bool{}
			}
			got[e.Org][e.CallKey] = true
		}
		done := true
		for _, org := range discovered {
			for k := range want[org] {
				if !got[org][k] {
					done = false
				}
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			for _, org := range discovered {
				missing := 0
				for k := range want[org] {
					if !got[org][k] {
						missing++
					}
				}
				t.Errorf("org %s: %d of its %d settled calls never published", org, missing, len(want[org]))
			}
			t.Fatalf("the discovered organizations were not polled to completion; sources %v", p.Sources())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if orgs := slices.Sorted(maps.Keys(got)); !slices.Equal(orgs, discovered) {
		t.Errorf("published calls of %v, want only the token's organizations %v", orgs, discovered)
	}
	if polled := slices.Sorted(maps.Keys(p.Sources())); !slices.Equal(polled, discovered) {
		t.Errorf("the producer polls %v (sources %v), want the organizations the API listed, %v", polled, p.Sources(), discovered)
	}
	// An organization the API no longer lists is no longer polled or
	// reported.
	sim.RemoveOrg("initech")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		polled := slices.Sorted(maps.Keys(p.Sources()))
		if slices.Equal(polled, []string{"acme"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sources %v after initech vanished, want only acme", polled)
		}
	}
}
