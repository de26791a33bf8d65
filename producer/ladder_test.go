package producer

import (
	"testing"
	"time"
)

// TestLadderReadsEverySliceAtEveryAge drives a checkpoint through simulated
// polls and checks that each rung covers time without gaps or overlaps and
// reads each slice only after it reached the rung's age.
func TestLadderReadsEverySliceAtEveryAge(t *testing.T) {
	ages := []time.Duration{0, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour}
	settle, poll, maxWin := 30*time.Second, 30*time.Second, time.Hour
	t0 := time.Date(2026, 2, 7, 0, 0, 0, 0, time.UTC)
	start := t0.Add(-settle - time.Hour)
	cp := newCheckpoint("acme", ages, start)
	covered := make([]time.Time, len(ages)) // per rung: end of the contiguous coverage
	for i := range covered {
		covered[i] = start
	}
	requests := 0
	for now := t0; now.Before(t0.Add(6 * time.Hour)); now = now.Add(poll) {
		for {
			w, ok := cp.Next(now, settle, poll, maxWin)
			if !ok {
				break
			}
			requests++
			if w.End.Sub(w.Start) > maxWin || !w.End.After(w.Start) {
				t.Fatalf("window %v..%v: bad length", w.Start, w.End)
			}
			if limit := now.Add(-settle - ages[w.Rung]); w.End.After(limit) {
				t.Fatalf("rung %d read up to %v at %v, before the slice reached age %v", w.Rung, w.End, now, ages[w.Rung])
			}
			cp.Done(w, now, settle)
			for i, r := range cp.Rungs {
				if r.Frontier.Before(covered[i]) {
					t.Fatalf("rung %d frontier went back", i)
				}
				covered[i] = r.Frontier
			}
		}
	}
	end := t0.Add(6 * time.Hour)
	for i, r := range cp.Rungs {
		lagBound := settle + ages[i] + max(poll, ages[i]/4) + poll
		if end.Sub(r.Frontier) > lagBound {
			t.Errorf("rung %d frontier %v lags %v behind, more than %v", i, r.Frontier, end.Sub(r.Frontier), lagBound)
		}
	}
	// Steady state: 120 + 48 + 8 + 2 = 178 windows an hour; allow the
	// catch-up of the first hour on top.
	if perHour := float64(requests) / 6; perHour > 200 {
		t.Errorf("%.0f windows an hour, want about 178", perHour)
	}
}

func TestLadderDoneServesHigherRungs(t *testing.T) {
	ages := []time.Duration{0, time.Minute, 10 * time.Minute}
	for _, settle := range []time.Duration{0, 30 * time.Second} {
		start := time.Date(2026, 2, 7, 0, 0, 0, 0, time.UTC)
		cp := newCheckpoint("acme", ages, start)
		now := start.Add(time.Hour)
		w, ok := cp.Next(now, settle, time.Second, 2*time.Hour)
		if !ok || w.Rung != 0 || !w.End.Equal(now.Add(-settle)) {
			t.Fatalf("settle %s: first window %+v %v, want rung 0 up to now less settle", settle, w, ok)
		}
		cp.Done(w, now, settle)
		for i, r := range cp.Rungs {
			if want := now.Add(-settle - ages[i]); !r.Frontier.Equal(want) {
				t.Errorf("settle %s: rung %d frontier %v, want %v", settle, i, r.Frontier, want)
			}
		}
		if w, ok := cp.Next(now, settle, time.Second, 2*time.Hour); ok {
			t.Errorf("settle %s: window %+v due right after a catch-up read", settle, w)
		}
		// Rung 1 (age 1m, step 15s) is due once it lags by exactly its step.
		later := now.Add(15 * time.Second)
		for {
			w, ok := cp.Next(later, settle, time.Second, 2*time.Hour)
			if !ok {
				t.Fatalf("settle %s: rung 1 not due after lagging by its step", settle)
			}
			cp.Done(w, later, settle)
			if w.Rung == 1 {
				break
			}
		}
	}
}

// TestRestoreFromBelowEverySample: a checkpoint whose lowest frontier is
// below every sample (a state saved by an older version, whose ladder had
// no floor for new rungs) restores from the oldest sample: a nil answer
// would mean "nothing of the org on the topic", and the restart would
// publish again what is there.
func TestRestoreFromBelowEverySample(t *testing.T) {
	start := time.Date(2026, 2, 7, 0, 0, 0, 0, time.UTC)
	cp := &Checkpoint{Org: "acme",
		Rungs:   []Rung{{Age: 0, Frontier: start.Add(time.Hour)}, {Age: 3 * time.Hour, Frontier: start.Add(-2 * time.Hour)}},
		Samples: []Sample{{Frontier: start, Offsets: map[int]int64{0: 5}}, {Frontier: start.Add(time.Hour), Offsets: map[int]int64{0: 9}}}}
	if got := cp.restoreFrom(); got == nil || got[0] != 5 {
		t.Fatalf("restore from %v, want the oldest sample (5)", got)
	}
	cp.Rungs[1].Frontier = start
	if got := cp.restoreFrom(); got == nil || got[0] != 5 {
		t.Fatalf("restore from %v, want the sample at the lowest frontier (5)", got)
	}
	cp.Rungs[1].Frontier = start.Add(time.Hour)
	if got := cp.restoreFrom(); got == nil || got[0] != 9 {
		t.Fatalf("restore from %v, want the newest sample at or below the lowest frontier (9)", got)
	}
}

func TestLadderSamples(t *testing.T) {
	ages := []time.Duration{0, 10 * time.Minute}
	start := time.Date(2026, 2, 7, 0, 0, 0, 0, time.UTC)
	cp := newCheckpoint("acme", ages, start)
	if cp.restoreFrom() != nil {
		t.Fatal("restore offsets before any sample")
	}
	for i := range 30 {
		now := start.Add(time.Duration(i+1) * time.Minute)
		cp.addSample(map[int]int64{0: int64(i)})
		for {
			w, ok := cp.Next(now, 0, time.Minute, time.Hour)
			if !ok {
				break
			}
			cp.Done(w, now, 0)
		}
	}
	low := cp.Low()
	from := cp.restoreFrom()
	if from == nil {
		t.Fatal("no restore offsets")
	}
	// The sample taken at the lowest frontier, or the newest one before it.
	for _, s := range cp.Samples {
		if s.Offsets[0] == from[0] && s.Frontier.After(low) {
			t.Fatalf("restore sample at %v is above the lowest frontier %v", s.Frontier, low)
		}
	}
	if len(cp.Samples) > 15 {
		t.Errorf("%d samples kept, want only those above the lowest frontier plus one", len(cp.Samples))
	}
}
