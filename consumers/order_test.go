package consumers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/schemas"
)

// TestSortByPosition: a batch whose deliveries all have positions is put
// in topic, partition and offset order, idx moving with it; one delivery
// without a position leaves the batch as it came.
func TestSortByPosition(t *testing.T) {
	pos := func(topic string, part int32, off int64) Delivery {
		return Delivery{Position: schemas.Position{Topic: topic, Partition: part, Offset: off}, HasPosition: true}
	}
	for _, tt := range []struct {
		name string
		in   []Delivery
		want []int // the input indexes, in the order they must end up
	}{
		{"offsets of one partition", []Delivery{pos("a", 0, 7), pos("a", 0, 5), pos("a", 0, 6)}, []int{1, 2, 0}},
		{"partitions interleaved", []Delivery{pos("a", 1, 1), pos("a", 0, 9), pos("a", 1, 0), pos("a", 0, 2)}, []int{3, 1, 2, 0}},
		{"topics first", []Delivery{pos("b", 0, 1), pos("a", 2, 5), pos("b", 0, 0), pos("a", 1, 8)}, []int{3, 1, 2, 0}},
		{"a delivery without a position", []Delivery{pos("a", 0, 7), {}, pos("a", 0, 5)}, []int{0, 1, 2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ds := append([]Delivery(nil), tt.in...)
			idx := make([]int, len(ds))
			for i := range idx {
				idx[i] = i
			}
			sortByPosition(ds, idx)
			for i, want := range tt.want {
				if idx[i] != want || fmt.Sprint(ds[i].Position) != fmt.Sprint(tt.in[want].Position) {
					t.Fatalf("order %v (positions %v), want input order %v", idx, ds, tt.want)
				}
			}
		})
	}
}

// TestSortByPositionAgainstReference: batches of interleaved partitions
// and topics, with repeated positions, each partition's offsets rising as
// Kafka fetches them (the merge) or in any order (the sort), end up in the
// order a plain stable sort of the deliveries gives, idx moving with them.
func TestSortByPositionAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		n := 1 + rng.IntN(600)
		ds := make([]Delivery, n)
		next := map[schemas.Position]int64{} // per topic and partition, for rising offsets
		for i := range ds {
			p := schemas.Position{Topic: []string{"a", "b"}[rng.IntN(2)], Partition: rng.Int32N(5)}
			if round%3 == 0 {
				p.Offset = rng.Int64N(int64(n))
			} else {
				p.Offset = next[p] + rng.Int64N(2) // repeats now and then
				next[schemas.Position{Topic: p.Topic, Partition: p.Partition}] = p.Offset
			}
			ds[i] = Delivery{Event: schemas.CallEvent{CallKey: strconv.Itoa(i)}, HasPosition: true, Position: p}
		}
		if round%10 == 0 { // already in order
			slices.SortStableFunc(ds, func(a, b Delivery) int { return comparePositions(a.Position, b.Position) })
		}
		want := slices.Clone(ds)
		sort.SliceStable(want, func(i, j int) bool { return comparePositions(want[i].Position, want[j].Position) < 0 })
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i + 1000
		}
		orig := slices.Clone(ds)
		sortByPosition(ds, idx)
		for i := range ds {
			if ds[i].Event.CallKey != want[i].Event.CallKey || ds[i].Position != want[i].Position {
				t.Fatalf("round %d, place %d: %v %s, want %v %s", round, i, ds[i].Position, ds[i].Event.CallKey, want[i].Position, want[i].Event.CallKey)
			}
			if orig[idx[i]-1000].Event.CallKey != ds[i].Event.CallKey {
				t.Fatalf("round %d, place %d: idx %d names delivery %s, the place holds %s", round, i, idx[i], orig[idx[i]-1000].Event.CallKey, ds[i].Event.CallKey)
			}
		}
	}
}

// BenchmarkSortByPosition: a batch of 500 from three partitions, as a
// Kafka fetch interleaves them.
func BenchmarkSortByPosition(b *testing.B) {
	in := make([]Delivery, 500)
	for i := range in {
		in[i] = Delivery{HasPosition: true, Position: schemas.Position{Topic: "calls", Partition: int32(i % 3), Offset: int64(i)}}
	}
	ds, idx := make([]Delivery, len(in)), make([]int, len(in))
	for b.Loop() {
		copy(ds, in)
		sortByPosition(ds, idx)
	}
}

// TestGatherBatches: gather hands out batches of at most size messages,
// in arrival order, and one short batch once wait has passed.
func TestGatherBatches(t *testing.T) {
	in := make(chan *message.Message, 20)
	for i := range 12 {
		in <- message.NewMessage(fmt.Sprint(i), nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := gather(ctx, in, 5, 50*time.Millisecond)
	var sizes []int
	next := 0
	for len(sizes) < 3 {
		select {
		case b := <-out:
			sizes = append(sizes, b.Len())
			for i := range b.Len() {
				if id := b.Message(i).UUID; id != fmt.Sprint(next) {
					t.Fatalf("message %s where %d was due", id, next)
				}
				next++
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("batches %v, then nothing", sizes)
		}
	}
	if fmt.Sprint(sizes) != "[5 5 2]" {
		t.Fatalf("batch sizes %v, want [5 5 2] (size 5, then what came within the wait)", sizes)
	}
}

// TestDeadLetterReasonLength: a reason of maxReasonLen bytes is kept
// whole; a longer one is cut there and marked.
func TestDeadLetterReasonLength(t *testing.T) {
	_, l := testLane(t, fastConfig(), &nopSink{}, &capturePublisher{}, nil, nil)
	msg := message.NewMessage("m", []byte("{}"))
	for _, n := range []int{maxReasonLen, maxReasonLen + 1} {
		reason := strings.Repeat("r", n)
		got := l.deadCopy(msg, errors.New(reason)).Metadata.Get(schemas.DLQReasonMetadata)
		want := reason
		if n > maxReasonLen {
			want = reason[:maxReasonLen] + "..."
		}
		if got != want {
			t.Errorf("reason of %d bytes recorded as %d bytes (%q...), want %d", n, len(got), got[max(0, len(got)-5):], len(want))
		}
	}
}

// TestUndeliverableRecordIsBounded: the record of messages that could not
// be dead-lettered keeps the newest maxUndeliverable entries.
func TestUndeliverableRecordIsBounded(t *testing.T) {
	state := &memState{}
	_, l := testLane(t, fastConfig(), &nopSink{}, &capturePublisher{}, nil, state)
	for i := range maxUndeliverable + 2 {
		msg := message.NewMessage(fmt.Sprint(i), []byte("{}"))
		l.undeliverable(l.deadCopy(msg, errors.New("too large")), errors.New("refused"))
	}
	list, err := Undeliverables(context.Background(), state)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != maxUndeliverable || list[0].UUID != "2" || list[len(list)-1].UUID != fmt.Sprint(maxUndeliverable+1) {
		t.Fatalf("%d entries, from %s to %s; want the newest %d, 2 to %d", len(list), list[0].UUID, list[len(list)-1].UUID, maxUndeliverable, maxUndeliverable+1)
	}
}
