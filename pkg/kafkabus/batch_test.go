package kafkabus_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/schemas"
)

func receiveBatch(t *testing.T, ch <-chan []*message.Message, within time.Duration) []*message.Message {
	t.Helper()
	select {
	case b, ok := <-ch:
		if !ok {
			t.Fatal("batch channel closed")
		}
		return b
	case <-time.After(within):
		t.Fatalf("no batch within %s", within)
	}
	return nil
}

// TestBatchesShapeAndBudget: batches hold at most maxMessages, in partition
// order, and the in-flight budget stops delivery until something is acked.
func TestBatchesShapeAndBudget(t *testing.T) {
	f := newFixture(t, 1)
	f.publishN(f.publisher(), 50, nil)
	s := f.subscriber(25)
	ch, err := s.SubscribeBatches(context.Background(), f.topic, 10, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var held []*message.Message
	for len(held) < 25 {
		b := receiveBatch(t, ch, 20*time.Second)
		if len(b) == 0 || len(b) > 10 {
			t.Fatalf("batch of %d messages, want 1..10", len(b))
		}
		held = append(held, b...)
	}
	if len(held) != 25 {
		t.Fatalf("received %d messages within a budget of 25", len(held))
	}
	for i, m := range held {
		if got := offsetOf(t, m); got != int64(i) {
			t.Fatalf("message %d at offset %d", i, got)
		}
	}
	select {
	case b := <-ch:
		t.Fatalf("a batch of %d arrived while the budget was spent", len(b))
	case <-time.After(300 * time.Millisecond):
	}
	for _, m := range held[:10] {
		m.Ack()
	}
	b := receiveBatch(t, ch, 10*time.Second)
	if got := offsetOf(t, b[0]); got != 25 {
		t.Fatalf("after acks the next batch starts at offset %d, want 25", got)
	}
}

// TestBatchesLinger: a partial batch is handed over once linger passed.
func TestBatchesLinger(t *testing.T) {
	f := newFixture(t, 1)
	f.publishN(f.publisher(), 3, nil)
	s := f.subscriber(100)
	ch, err := s.SubscribeBatches(context.Background(), f.topic, 100, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for n < 3 {
		n += len(receiveBatch(t, ch, 20*time.Second))
	}
	if n != 3 {
		t.Fatalf("received %d messages, want 3", n)
	}
}

// TestBatchesRandomVerdictsLoseNothing acks and nacks at random across
// batches of three partitions, and holds some batches without a verdict;
// every message is eventually acked, a nacked one comes back, and after
// Close the committed offsets never pass an unacked message: a second
// subscriber gets again everything that was never acked.
func TestBatchesRandomVerdictsLoseNothing(t *testing.T) {
	const n = 600
	f := newFixture(t, 3)
	f.publishN(f.publisher(), n, func(i int) string { return "k" + strconv.Itoa(i%17) })
	s1 := f.subscriber(200)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s1.SubscribeBatches(ctx, f.topic, 64, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	acked := map[string]bool{}
	nacks := 0
	var unacked []*message.Message
	for len(acked) < n/2 {
		batch := receiveBatch(t, ch, 20*time.Second)
		// Held messages count against the in-flight budget (200): holding
		// more than half of it could stall delivery, depending on how the
		// broker happened to cut the batches.
		if rng.IntN(8) == 0 && len(unacked)+len(batch) <= 100 {
			unacked = append(unacked, batch...) // held to the end: never acked
			continue
		}
		// Verdicts come in batch order, as the consumer runtime gives them.
		for _, m := range batch {
			switch {
			case rng.IntN(10) == 0:
				m.Nack()
				nacks++
			default:
				if acked[string(m.Payload)] {
					t.Fatalf("payload %s delivered again after its ack", m.Payload)
				}
				acked[string(m.Payload)] = true
				m.Ack()
			}
		}
	}
	if nacks == 0 || len(unacked) == 0 {
		t.Fatalf("the random verdicts gave %d nacks and %d held messages: the test proves nothing", nacks, len(unacked))
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	// Everything not acked comes again to the next member, from the
	// committed offsets; what was acked may come again too (at least once),
	// but nothing is missing.
	s2 := f.subscriber(n)
	ch2, err := s2.SubscribeBatches(context.Background(), f.topic, 100, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for len(acked) < n {
		for _, m := range receiveBatch(t, ch2, 20*time.Second) {
			acked[string(m.Payload)] = true
			m.Ack()
		}
	}
	for _, m := range unacked {
		if !acked[string(m.Payload)] {
			t.Fatalf("held message %s never came back", m.Payload)
		}
		if _, ok := schemas.PositionOf(m.Metadata); !ok {
			t.Fatalf("message %s has no position", m.Payload)
		}
	}
}
