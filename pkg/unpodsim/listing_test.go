package unpodsim

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestListingMatchesWalk moves the clock through late records, updates and
// page shifts and checks, at every step and at the edges of every cached
// listing's validity, that the cached listing equals a fresh walk. It also
// checks that the cache is used: a cache that never hit would pass the
// comparison trivially.
func TestListingMatchesWalk(t *testing.T) {
	clock := &fakeClock{now: t0}
	cfg := testConfig(clock)
	cfg.LateRecords, cfg.Updates, cfg.PageShifts = 0.3, 0.5, 0.1
	sim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	filters := []struct {
		name string
		f    filter
	}{
		{"no bounds", filter{}},
		{"start only", filter{from: t0.Add(-20 * time.Minute)}},
		{"window ending before now", filter{from: t0.Add(-90 * time.Minute), to: t0.Add(-30 * time.Minute)}},
		{"window ending after now", filter{from: t0.Add(-5 * time.Minute), to: t0.Add(5 * time.Minute)}},
		{"window starting after now", filter{from: t0.Add(2 * time.Minute), to: t0.Add(4 * time.Minute)}},
		{"inbound", filter{from: t0.Add(-30 * time.Minute), callType: "inbound"}},
		{"missed", filter{from: t0.Add(-30 * time.Minute), callStatus: "missed"}},
		{"outbound failed", filter{callType: "outbound", callStatus: "failed"}},
	}
	fresh := func(f filter) []*version {
		var vs []*version
		sim.each("acme", f, func(_ *call, v *version) bool { vs = append(vs, v); return true })
		return vs
	}
	check := func(name string, f filter) (hit bool) {
		t.Helper()
		prev := sim.listings.m[keyOf("acme", f)]
		got, want := sim.list("acme", f), fresh(f)
		if len(got) != len(want) {
			t.Fatalf("%s at %s: cached listing has %d versions, a fresh walk %d", name, f.now.Format(time.RFC3339Nano), len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s at %s: version %d differs: cached %s, fresh %s", name, f.now.Format(time.RFC3339Nano), i, got[i].json, want[i].json)
			}
		}
		return prev != nil && sim.listings.m[keyOf("acme", f)] == prev
	}
	rng := rand.New(rand.NewPCG(1, 2))
	hits, calls := 0, 0
	for now := t0.Add(-10 * time.Minute); now.Before(t0.Add(10 * time.Minute)); now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond) {
		for _, c := range filters {
			f := c.f
			f.now = now
			if check(c.name, f) {
				hits++
			}
			calls++
			// The edges: the last instant the listing is valid for, and
			// the first it is not.
			if l := sim.listings.m[keyOf("acme", f)]; l != nil && !l.until.IsZero() {
				f.now = l.until.Add(-time.Nanosecond)
				check(c.name+" (just before the next change)", f)
				f.now = l.until
				check(c.name+" (at the next change)", f)
			}
		}
	}
	if hits == 0 || hits == calls {
		t.Fatalf("%d of %d listings came from the cache: the test does not exercise both paths", hits, calls)
	}
	t.Logf("%d of %d listings came from the cache", hits, calls)
}

// TestListingStaticClock checks that a fixed clock, as in the benchmarks,
// lists a window once however many pages are read.
func TestListingStaticClock(t *testing.T) {
	sim, err := New(testConfig(&fakeClock{now: t0}))
	if err != nil {
		t.Fatal(err)
	}
	f := filter{from: t0.Add(-time.Hour), to: t0, now: t0}
	a, b := sim.list("acme", f), sim.list("acme", f)
	if len(a) == 0 || &a[0] != &b[0] {
		t.Fatalf("the second listing of %d versions was not served from the cache", len(a))
	}
}
