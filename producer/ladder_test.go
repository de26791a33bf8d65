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
	start := time.Date(2026, 2, 7, 0, 0, 0, 0, time.UTC)
	cp := newCheckpoint("acme", ages, start)
	now := start.Add(time.Hour)
	w, ok := cp.Next(now, 0, time.Second, 2*time.Hour)
	if !ok || w.Rung != 0 || !w.End.Equal(now) {
		t.Fatalf("first window %+v %v, want rung 0 up to now", w, ok)
	}
	cp.Done(w, now, 0)
	want := []time.Time{now, now.Add(-time.Minute), now.Add(-10 * time.Minute)}
	for i, r := range cp.Rungs {
		if !r.Frontier.Equal(want[i]) {
			t.Errorf("rung %d frontier %v, want %v", i, r.Frontier, want[i])
		}
	}
	if w, ok := cp.Next(now, 0, time.Second, 2*time.Hour); ok {
		t.Errorf("window %+v due right after a catch-up read", w)
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
