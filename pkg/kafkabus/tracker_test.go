package kafkabus

import (
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/segmentio/kafka-go"
)

func msgAt(p int, o int64) kafka.Message { return kafka.Message{Partition: p, Offset: o} }

// committedOffsets runs take and returns partition -> offset to commit
// (last acked-prefix offset + 1), the way kafka-go's CommitMessages does.
func committedOffsets(tr *commitTracker) map[int]int64 {
	msgs, _ := tr.take()
	out := map[int]int64{}
	for _, m := range msgs {
		out[m.Partition] = m.Offset + 1
	}
	return out
}

func TestCommitTrackerPrefix(t *testing.T) {
	type step struct {
		add  []kafka.Message
		ack  []kafka.Message
		want map[int]int64 // commits handed out after this step
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{
			{add: []kafka.Message{msgAt(0, 0), msgAt(0, 1)}, ack: []kafka.Message{msgAt(0, 0)}, want: map[int]int64{0: 1}},
			{ack: []kafka.Message{msgAt(0, 1)}, want: map[int]int64{0: 2}},
		}},
		{"out of order waits for the gap", []step{
			{add: []kafka.Message{msgAt(0, 0), msgAt(0, 1), msgAt(0, 2)}, ack: []kafka.Message{msgAt(0, 2), msgAt(0, 1)}, want: map[int]int64{}},
			{ack: []kafka.Message{msgAt(0, 0)}, want: map[int]int64{0: 3}},
		}},
		{"offset gaps from compaction are contiguous", []step{
			{add: []kafka.Message{msgAt(0, 10), msgAt(0, 15), msgAt(0, 40)}, ack: []kafka.Message{msgAt(0, 10), msgAt(0, 15)}, want: map[int]int64{0: 16}},
		}},
		{"partitions are independent", []step{
			{add: []kafka.Message{msgAt(0, 0), msgAt(1, 0), msgAt(1, 1)}, ack: []kafka.Message{msgAt(1, 1), msgAt(1, 0)}, want: map[int]int64{1: 2}},
			{ack: []kafka.Message{msgAt(0, 0)}, want: map[int]int64{0: 1}},
		}},
		{"rewind drops stale entries", []step{
			{add: []kafka.Message{msgAt(0, 5), msgAt(0, 6)}, ack: []kafka.Message{msgAt(0, 6)}, want: map[int]int64{}},
			// The group hands the partition back from offset 5.
			{add: []kafka.Message{msgAt(0, 5), msgAt(0, 6)}, ack: []kafka.Message{msgAt(0, 5)}, want: map[int]int64{0: 6}},
			{ack: []kafka.Message{msgAt(0, 6)}, want: map[int]int64{0: 7}},
		}},
		{"unknown ack is ignored", []step{
			{add: []kafka.Message{msgAt(0, 1)}, ack: []kafka.Message{msgAt(0, 0), msgAt(3, 1)}, want: map[int]int64{}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newCommitTracker()
			for i, s := range tt.steps {
				for _, m := range s.add {
					tr.add(m)
				}
				for _, m := range s.ack {
					tr.ack(m)
				}
				got := committedOffsets(tr)
				if len(got) != len(s.want) {
					t.Fatalf("step %d: commits %v, want %v", i, got, s.want)
				}
				for p, o := range s.want {
					if got[p] != o {
						t.Fatalf("step %d: commits %v, want %v", i, got, s.want)
					}
				}
			}
		})
	}
}

// TestCommitTrackerNeverPassesUnacked acks random subsets in random order and
// checks after every ack that no handed-out commit passes an unacked offset.
func TestCommitTrackerNeverPassesUnacked(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		tr := newCommitTracker()
		const n = 50
		for o := int64(0); o < n; o++ {
			tr.add(msgAt(0, o))
		}
		order := rng.Perm(n)
		skip := map[int64]bool{}
		for i := 0; i < rng.IntN(3); i++ {
			skip[int64(rng.IntN(n))] = true
		}
		acked := map[int64]bool{}
		committed := int64(0)
		for _, i := range order {
			o := int64(i)
			if skip[o] {
				continue
			}
			acked[o] = true
			tr.ack(msgAt(0, o))
			if c, ok := committedOffsets(tr)[0]; ok {
				if c <= committed {
					t.Fatalf("round %d: commit went from %d to %d", round, committed, c)
				}
				committed = c
			}
			for o := int64(0); o < committed; o++ {
				if !acked[o] {
					t.Fatalf("round %d: committed %d past unacked offset %d", round, committed, o)
				}
			}
		}
		want := int64(n)
		if len(skip) > 0 {
			keys := make([]int64, 0, len(skip))
			for k := range skip {
				keys = append(keys, k)
			}
			sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
			want = keys[0]
		}
		if committed != want {
			t.Fatalf("round %d: final commit %d, want %d (skipped %v)", round, committed, want, skip)
		}
	}
}

func TestCommitTrackerPutBack(t *testing.T) {
	tr := newCommitTracker()
	tr.add(msgAt(0, 0))
	tr.add(msgAt(0, 1))
	tr.ack(msgAt(0, 0))
	msgs, n := tr.take()
	if len(msgs) != 1 || n != 1 {
		t.Fatalf("take = %v, %d", msgs, n)
	}
	tr.putBack(msgs)
	if got := committedOffsets(tr); got[0] != 1 {
		t.Fatalf("after put back: %v, want offset 1 again", got)
	}
	tr.putBack(msgs)
	tr.ack(msgAt(0, 1))
	if got := committedOffsets(tr); got[0] != 2 {
		t.Fatalf("a later ack must win over a put-back commit: %v", got)
	}
}
