package kafkabus_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/schemas"
)

func receiveBatch(t *testing.T, ch <-chan *delivery.Batch, within time.Duration) *delivery.Batch {
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
	var held []*delivery.Batch
	n := 0
	for n < 25 {
		b := receiveBatch(t, ch, 20*time.Second)
		if b.Len() == 0 || b.Len() > 10 {
			t.Fatalf("batch of %d messages, want 1..10", b.Len())
		}
		for i, r := range b.Records {
			if r.Position.Offset != int64(n) || !r.HasPosition || r.Position.Topic != f.topic {
				t.Fatalf("message %d at %+v (has position %v)", n, r.Position, r.HasPosition)
			}
			if got := offsetOf(t, b.Message(i)); got != int64(n) {
				t.Fatalf("message %d: its watermill message says offset %d", n, got)
			}
			n++
		}
		held = append(held, b)
	}
	if n != 25 {
		t.Fatalf("received %d messages within a budget of 25", n)
	}
	select {
	case b := <-ch:
		t.Fatalf("a batch of %d arrived while the budget was spent", b.Len())
	case <-time.After(300 * time.Millisecond):
	}
	held[0].Ack()
	b := receiveBatch(t, ch, 10*time.Second)
	if got := b.Records[0].Position.Offset; got != 25 {
		t.Fatalf("after acks the next batch starts at offset %d, want 25", got)
	}
	if b.Len() > held[0].Len() {
		t.Fatalf("the first batch's ack freed %d slots, and %d messages came", held[0].Len(), b.Len())
	}
}

// TestBatchMetadata: a batch's record reads its headers and delivery
// metadata as the message Subscribe would deliver, without making one.
func TestBatchMetadata(t *testing.T) {
	f := newFixture(t, 1)
	msg := message.NewMessage(watermill.NewUUID(), []byte("payload"))
	msg.Metadata.Set(schemas.HeaderType, "callstream.call.created.v1")
	msg.Metadata.Set(schemas.KeyMetadata, "the-key")
	if err := f.publisher().Publish(f.topic, msg); err != nil {
		t.Fatal(err)
	}
	ch, err := f.subscriber(10).SubscribeBatches(context.Background(), f.topic, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := receiveBatch(t, ch, 20*time.Second)
	whole := b.Message(0)
	if whole.UUID != msg.UUID || string(whole.Payload) != "payload" || string(b.Records[0].Payload) != "payload" {
		t.Fatalf("message %s %q, record %q; want %s %q", whole.UUID, whole.Payload, b.Records[0].Payload, msg.UUID, "payload")
	}
	for _, key := range []string{schemas.HeaderType, schemas.KeyMetadata, schemas.OffsetMetadata, schemas.PartitionMetadata,
		schemas.TopicMetadata, schemas.TimestampMetadata, kafkabus.UUIDHeader, "absent"} {
		if got, want := b.Metadata(0, key), whole.Metadata.Get(key); got != want {
			t.Errorf("Metadata(%s) = %q, the message has %q", key, got, want)
		}
	}
	if b.Metadata(0, schemas.HeaderType) != "callstream.call.created.v1" || b.Metadata(0, schemas.KeyMetadata) != "the-key" {
		t.Fatalf("headers lost: %v", whole.Metadata)
	}
	b.Ack()
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
		n += receiveBatch(t, ch, 20*time.Second).Len()
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
	var unacked []delivery.Record
	for len(acked) < n/2 {
		batch := receiveBatch(t, ch, 20*time.Second)
		// Held messages count against the in-flight budget (200): holding
		// more than half of it could stall delivery, depending on how the
		// broker happened to cut the batches.
		if rng.IntN(8) == 0 && len(unacked)+batch.Len() <= 100 {
			unacked = append(unacked, batch.Records...) // held to the end: never settled
			continue
		}
		verdicts := make([]bool, batch.Len())
		for i, r := range batch.Records {
			switch {
			case rng.IntN(10) == 0:
				nacks++
			default:
				if acked[string(r.Payload)] {
					t.Fatalf("payload %s delivered again after its ack", r.Payload)
				}
				acked[string(r.Payload)] = true
				verdicts[i] = true
			}
		}
		batch.Settle(verdicts)
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
		b := receiveBatch(t, ch2, 20*time.Second)
		for _, r := range b.Records {
			acked[string(r.Payload)] = true
		}
		b.Ack()
	}
	for _, r := range unacked {
		if !acked[string(r.Payload)] {
			t.Fatalf("held message %s never came back", r.Payload)
		}
	}
}
