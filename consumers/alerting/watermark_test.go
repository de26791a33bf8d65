package alerting

import (
	"container/heap"
	"testing"
	"time"
)

// TestLowestLeavesIdleSources: a source silent for idle_timeout or longer
// no longer holds the watermark back; one heard from a moment less ago
// still does, and one heard from again is back in.
func TestLowestLeavesIdleSources(t *testing.T) {
	const idle = time.Minute
	now := t0.Add(time.Hour)
	tests := []struct {
		name     string
		silent   []time.Duration // per source, highs 1, 2, 3...
		wantHigh int64
		wantOK   bool
	}{
		{"all heard from", []time.Duration{0, 0}, 1, true},
		{"the lowest silent for exactly idle_timeout", []time.Duration{idle, 0}, 2, true},
		{"the lowest silent a nanosecond short of it", []time.Duration{idle - time.Nanosecond, 0}, 1, true},
		{"the lowest two idle", []time.Duration{2 * idle, idle, 0}, 3, true},
		{"every source idle", []time.Duration{idle, 3 * idle}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h sourceHeap
			for i, s := range tt.silent {
				heap.Push(&h, &sourceMark{high: int64(i + 1), lastSeen: now.Add(-s), pos: -1})
			}
			high, ok := h.lowest(now, idle)
			if high != tt.wantHigh || ok != tt.wantOK {
				t.Fatalf("lowest = %d, %v; want %d, %v", high, ok, tt.wantHigh, tt.wantOK)
			}
		})
	}
	// A source popped as idle that delivers again counts again.
	var h sourceHeap
	s := &sourceMark{high: 5, lastSeen: now.Add(-2 * idle), pos: -1}
	h.seen(s, now.Add(-2*idle))
	if _, ok := h.lowest(now, idle); ok {
		t.Fatal("an idle source still holds the watermark")
	}
	h.seen(s, now)
	h.raise(s, 7)
	if high, ok := h.lowest(now, idle); !ok || high != 7 {
		t.Fatalf("lowest after the source came back = %d, %v; want 7, true", high, ok)
	}
}
