package storage

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestFormatSQLiteTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	times := []time.Time{
		{},
		time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 29, 1, 30, 0, 0, time.FixedZone("x", -9*3600)),
	}
	for range 1000 {
		times = append(times, time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).In(time.FixedZone("z", (rng.IntN(48)-24)*1800)))
	}
	for _, tm := range times {
		if got, want := formatSQLiteTime(tm), tm.UTC().Format(sqliteTime); got != want {
			t.Errorf("formatSQLiteTime(%v) = %q, want %q", tm, got, want)
		}
	}
	// Text order must be time order, which the indexes rely on.
	a, b := time.Date(2026, 1, 1, 0, 0, 0, 5e8, time.UTC), time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	if !(formatSQLiteTime(a) < formatSQLiteTime(b)) {
		t.Errorf("%q sorts after %q", formatSQLiteTime(a), formatSQLiteTime(b))
	}
}
