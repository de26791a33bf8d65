package unpodsim

import (
	"slices"
	"testing"
	"time"
)

// TestOutage: an outage leaves an org without calls for its duration, and
// without touching any other call: the traffic before and after it, and of
// the other orgs, is the same call for call as without the outage. A
// partial outage loses its intensity's share of the calls.
func TestOutage(t *testing.T) {
	from, to := t0.Add(-40*time.Minute), t0.Add(-30*time.Minute)
	build := func(incidents ...Incident) *Server {
		t.Helper()
		cfg := testConfig(&fakeClock{now: t0})
		cfg.Incidents = incidents
		sim, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return sim
	}
	plain := build()
	down := build(Incident{Kind: Outage, Org: "acme", Start: from, Duration: to.Sub(from), Intensity: 1})
	window := func(sim *Server, org string, a, b time.Time) []string {
		return raws(sim.GroundTruthWindow(org, a, b, t0))
	}

	if got := window(down, "acme", from, to); len(got) != 0 {
		t.Fatalf("acme has %d calls during its outage, want none", len(got))
	}
	if n := len(window(plain, "acme", from, to)); n < 200 {
		t.Fatalf("without the outage acme has only %d calls in those 10 minutes", n)
	}
	for _, span := range [][2]time.Time{{t0.Add(-2 * time.Hour), from}, {to, t0}} {
		if a, b := window(plain, "acme", span[0], span[1]), window(down, "acme", span[0], span[1]); !slices.Equal(a, b) || len(a) == 0 {
			t.Errorf("acme's calls in [%s, %s) changed with the outage: %d vs %d", span[0], span[1], len(b), len(a))
		}
	}
	if a, b := window(plain, "globex", from, to), window(down, "globex", from, to); !slices.Equal(a, b) || len(a) == 0 {
		t.Errorf("the acme outage changed globex's calls: %d vs %d", len(b), len(a))
	}

	// A partial outage loses about its intensity's share, and the calls
	// it keeps are calls the plain traffic has.
	partial := build(Incident{Kind: Outage, Org: "acme", Start: from, Duration: to.Sub(from), Intensity: 0.75})
	all, kept := window(plain, "acme", from, to), window(partial, "acme", from, to)
	if share := float64(len(kept)) / float64(len(all)); share < 0.15 || share > 0.35 {
		t.Errorf("a 75%% outage kept %d of %d calls (%.2f), want about a quarter", len(kept), len(all), share)
	}
	for _, r := range kept {
		if !slices.Contains(all, r) {
			t.Fatalf("the partial outage made up a call: %s", r)
		}
	}
}

// TestOutageIsAKnownIncident: the config accepts the outage kind.
func TestOutageIsAKnownIncident(t *testing.T) {
	cfg := testConfig(&fakeClock{now: t0})
	cfg.Incidents = []Incident{{Kind: Outage, After: time.Minute, Duration: time.Minute, Intensity: 1}}
	if _, err := New(cfg); err != nil {
		t.Fatalf("an outage incident is refused: %v", err)
	}
	if d := DefaultConfig(); !slices.ContainsFunc(d.Incidents, func(in Incident) bool { return in.Kind == Outage }) {
		t.Fatalf("the default incidents %+v script no outage", d.Incidents)
	}
}
