package sqlitebus

import (
	"math/rand/v2"
	"testing"
)

func TestTrackerPrefix(t *testing.T) {
	type step struct {
		add  []int64
		ack  []int64
		want int64 // offset handed out for commit after this step; -1: none
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{
			{add: []int64{0, 1}, ack: []int64{0}, want: 1},
			{ack: []int64{1}, want: 2},
		}},
		{"out of order waits for the gap", []step{
			{add: []int64{0, 1, 2}, ack: []int64{2, 1}, want: -1},
			{ack: []int64{0}, want: 3},
		}},
		{"a later gap holds back only what follows it", []step{
			{add: []int64{0, 1, 2, 3}, ack: []int64{0, 1, 3}, want: 2},
			{ack: []int64{2}, want: 4},
		}},
		{"a log starting past the committed offset is contiguous", []step{
			{add: []int64{10, 11, 40}, ack: []int64{10, 11}, want: 12},
			{ack: []int64{40}, want: 41},
		}},
		{"unknown and repeated acks change nothing", []step{
			{add: []int64{5}, ack: []int64{4, 6}, want: -1},
			{ack: []int64{5, 5}, want: 6},
			{ack: []int64{5}, want: -1},
		}},
		{"commits accumulate until taken", []step{
			{add: []int64{0, 1, 2}, ack: []int64{0}, want: 1},
			{ack: []int64{1}, want: 2},
			{add: []int64{3}, ack: []int64{3, 2}, want: 4},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &tracker{}
			for i, s := range tt.steps {
				for _, o := range s.add {
					tr.add(o)
				}
				for _, o := range s.ack {
					tr.ack(o)
				}
				got, _, ok := tr.take()
				if !ok {
					got = -1
				}
				if got != s.want {
					t.Fatalf("step %d: commit %d, want %d", i, got, s.want)
				}
			}
		})
	}
}

// TestTrackerNeverPassesUnacked acks random subsets in random order and
// checks after every ack that no handed-out commit passes an unacked
// offset, and that everything acked before the first hole is committed.
func TestTrackerNeverPassesUnacked(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 300; round++ {
		tr := &tracker{}
		const n = 60
		for o := int64(0); o < n; o++ {
			tr.add(o)
		}
		skip := map[int64]bool{}
		for i := 0; i < rng.IntN(3); i++ {
			skip[int64(rng.IntN(n))] = true
		}
		acked := map[int64]bool{}
		committed, covered := int64(0), 0
		for _, i := range rng.Perm(n) {
			o := int64(i)
			if skip[o] {
				continue
			}
			acked[o] = true
			tr.ack(o)
			if c, k, ok := tr.take(); ok {
				if c <= committed {
					t.Fatalf("round %d: commit went from %d to %d", round, committed, c)
				}
				committed, covered = c, covered+k
			}
			for o := int64(0); o < committed; o++ {
				if !acked[o] {
					t.Fatalf("round %d: committed %d past unacked offset %d", round, committed, o)
				}
			}
		}
		want := int64(n)
		for o := range skip {
			want = min(want, o)
		}
		if committed != want || int64(covered) != want {
			t.Fatalf("round %d: final commit %d covering %d, want %d (skipped %v)", round, committed, covered, want, skip)
		}
	}
}

func TestTrackerPutBack(t *testing.T) {
	tr := &tracker{}
	for o := int64(0); o < 3; o++ {
		tr.add(o)
	}
	tr.ack(0)
	off, n, ok := tr.take()
	if !ok || off != 1 || n != 1 {
		t.Fatalf("take = %d, %d, %v", off, n, ok)
	}
	tr.putBack(off, n)
	if off, n, _ := tr.take(); off != 1 || n != 1 {
		t.Fatalf("after put back: %d covering %d, want 1 covering 1 again", off, n)
	}
	tr.putBack(1, 1)
	tr.ack(1)
	if off, n, _ := tr.take(); off != 2 || n != 2 {
		t.Fatalf("a later ack must win over a put-back commit and cover it: %d covering %d, want 2 covering 2", off, n)
	}
}
