package sqlitebus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/pkg/sqlitebus"
	"github.com/callstream/callstream/schemas"
)

func offsets(t testing.TB, batch []*message.Message) []int64 {
	out := make([]int64, len(batch))
	for i, m := range batch {
		out[i] = offsetOf(t, m)
	}
	return out
}

func wantRange(t testing.TB, batch []*message.Message, from, to int64) {
	t.Helper()
	got := offsets(t, batch)
	if len(got) != int(to-from) {
		t.Fatalf("batch %v, want offsets %d..%d", got, from, to-1)
	}
	for i, o := range got {
		if o != from+int64(i) {
			t.Fatalf("batch %v, want offsets %d..%d", got, from, to-1)
		}
	}
}

func TestBatches(t *testing.T) {
	b := openBus(t, sqlitebus.Config{})
	publish(t, b.Publisher(), "calls", simple("m", 250)...)
	s := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g", MaxInFlight: 150})
	ch, err := s.SubscribeBatches(context.Background(), "calls", 100, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	b1 := receiveBatch(t, ch, 5*time.Second)
	wantRange(t, b1, 0, 100)
	// The budget of 150 unacked messages cuts the second batch short.
	b2 := receiveBatch(t, ch, 5*time.Second)
	wantRange(t, b2, 100, 150)
	nothing(t, ch, 100*time.Millisecond, "150 messages unacked, MaxInFlight 150")

	// Acks in any order; one nacked message comes back in a later batch and
	// holds the commit back.
	for i := len(b2) - 1; i >= 0; i-- {
		b2[i].Ack()
	}
	for i, m := range b1 {
		if i == 30 {
			m.Nack()
			continue
		}
		m.Ack()
	}
	b3 := receiveBatch(t, ch, 5*time.Second)
	seen := map[int64]int{}
	var all []int64
	for len(all) < 101 {
		for _, o := range offsets(t, b3) {
			seen[o]++
			all = append(all, o)
		}
		for _, m := range b3 {
			if offsetOf(t, m) != 30 { // keep 30 outstanding for now
				m.Ack()
			}
		}
		for i := 1; i < len(b3); i++ {
			if offsetOf(t, b3[i]) <= offsetOf(t, b3[i-1]) {
				t.Fatalf("batch not in offset order: %v", offsets(t, b3))
			}
		}
		if len(all) < 101 {
			b3 = receiveBatch(t, ch, 5*time.Second)
		}
	}
	if seen[30] != 1 {
		t.Fatalf("nacked offset 30 redelivered %d times, want once", seen[30])
	}
	for o := int64(150); o < 250; o++ {
		if seen[o] != 1 {
			t.Fatalf("offset %d delivered %d times, want once (got %v)", o, seen[o], all)
		}
	}
	waitCommitted(t, b, "calls", "g", 30)
	time.Sleep(30 * time.Millisecond)
	if c := committed(t, b, "calls", "g"); c != 30 {
		t.Fatalf("committed %d with offset 30 unacked", c)
	}
}

// TestBatchLinger checks that a batch waits up to linger of its first
// message for more, and no longer.
func TestBatchLinger(t *testing.T) {
	b := openBus(t, sqlitebus.Config{PollInterval: time.Hour})
	pub := b.Publisher()
	s := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g", MaxInFlight: 100})
	ch, err := s.SubscribeBatches(context.Background(), "calls", 10, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, pub, "calls", simple("a", 1)...)
	time.Sleep(50 * time.Millisecond)
	publish(t, pub, "calls", simple("b", 2)...)
	start := time.Now()
	batch := receiveBatch(t, ch, 5*time.Second)
	wantRange(t, batch, 0, 3)
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Fatalf("batch came %s after the third message, before linger ran out", waited)
	}
	// A full batch goes at once.
	publish(t, pub, "calls", simple("c", 10)...)
	start = time.Now()
	wantRange(t, receiveBatch(t, ch, 5*time.Second), 3, 13)
	if waited := time.Since(start); waited > 250*time.Millisecond {
		t.Fatalf("a full batch waited %s", waited)
	}

	// linger 0: what is there at once.
	ch0, err := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "h", MaxInFlight: 100}).SubscribeBatches(context.Background(), "calls", 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantRange(t, receiveBatch(t, ch0, 5*time.Second), 0, 13)
}

// TestInProcessWake checks that a publish through the Bus wakes its
// subscriptions at once: the poll interval is an hour here.
func TestInProcessWake(t *testing.T) {
	b := openBus(t, sqlitebus.Config{PollInterval: time.Hour})
	ch, err := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g"}).Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the subscription is idle, waiting
	start := time.Now()
	publish(t, b.Publisher(), "calls", simple("m", 1)...)
	receive(t, ch, 5*time.Second)
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("delivered %s after Publish", d)
	}
}

// TestOtherWriterPolled checks that messages another Bus on the same file
// (another process, such as `callstream dlq replay`) writes are seen
// within the poll interval.
func TestOtherWriterPolled(t *testing.T) {
	b := openBus(t, sqlitebus.Config{PollInterval: 50 * time.Millisecond})
	other := openBus(t, sqlitebus.Config{Path: pathOf(b)})
	ch, err := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g"}).Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b.Publisher(), "calls", simple("here", 1)...)
	receive(t, ch, 5*time.Second).Ack()
	time.Sleep(100 * time.Millisecond)
	publish(t, other.Publisher(), "calls", simple("there", 2)...)
	for i, want := range []string{"there-uuid-0", "there-uuid-1"} {
		m := receive(t, ch, 2*time.Second)
		if m.UUID != want || offsetOf(t, m) != int64(i+1) {
			t.Fatalf("got %s at %d, want %s at %d", m.UUID, offsetOf(t, m), want, i+1)
		}
		m.Ack()
	}
	// And the other writer's offsets follow on from ours, and ours from
	// theirs.
	publish(t, b.Publisher(), "calls", simple("here-again", 1)...)
	if m := receive(t, ch, 2*time.Second); offsetOf(t, m) != 3 {
		t.Fatalf("offset %d, want 3", offsetOf(t, m))
	}
}

// TestConcurrentWriters runs four publishers and four consumer groups on one
// Bus at once: every group gets every message, commits the end, and the one
// writer path never met a locked file.
func TestConcurrentWriters(t *testing.T) {
	reg := newRegistry()
	b := openBus(t, sqlitebus.Config{Registerer: reg})
	const publishers, per, chunk, groups = 4, 2000, 50, 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	counts := make([]map[string]int, groups)
	for g := range groups {
		counts[g] = map[string]int{}
		s := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: fmt.Sprintf("g%d", g), MaxInFlight: 200})
		ch, err := s.SubscribeBatches(ctx, "calls", 100, 2*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range ch {
				for _, m := range b.Messages(ctx) {
					counts[g][m.UUID]++
					m.Ack()
				}
			}
		}()
	}
	var pwg sync.WaitGroup
	for p := range publishers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			pub := b.Publisher()
			for i := 0; i < per; i += chunk {
				msgs := make([]*message.Message, chunk)
				for j := range msgs {
					msgs[j] = message.NewMessage(fmt.Sprintf("p%d-%d", p, i+j), []byte("x"))
				}
				if err := pub.Publish("calls", msgs...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	pwg.Wait()
	total := int64(publishers * per)
	for g := range groups {
		waitCommitted(t, b, "calls", fmt.Sprintf("g%d", g), total)
	}
	cancel()
	wg.Wait()
	for g := range groups {
		if len(counts[g]) != int(total) {
			t.Errorf("group %d got %d distinct messages, want %d", g, len(counts[g]), total)
		}
	}
	if n := counterValue(t, reg, "sqlitebus_errors_total", "op", "busy"); n != 0 {
		t.Errorf("%v writes met a busy file: the writers fought for the lock", n)
	}
	// Group commit: concurrent Publish calls and commits share
	// transactions, so there are fewer than Publish calls alone.
	calls := uint64(publishers * per / chunk)
	txs := histogramCount(t, reg, "sqlitebus_write_transaction_seconds")
	t.Logf("%d Publish calls and the commits of %d messages per group in %d write transactions", calls, int(counterValue(t, reg, "sqlitebus_committed_messages_total", "group", "g0")), txs)
	if txs >= calls {
		t.Errorf("%d write transactions for %d Publish calls and the groups' commits: writes do not share transactions", txs, calls)
	}
}

// TestBatchMetadata: a batch's record reads its metadata and position as
// the message Subscribe would deliver, without making one.
func TestBatchMetadata(t *testing.T) {
	b := openBus(t, sqlitebus.Config{})
	msgs := simple("m", 3)
	msgs[2].Metadata.Set(schemas.HeaderType, "callstream.call.created.v1")
	msgs[2].Metadata.Set(schemas.KeyMetadata, "the-key")
	publish(t, b.Publisher(), "calls", msgs...)
	s := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g", MaxInFlight: 10})
	ch, err := s.SubscribeBatches(context.Background(), "calls", 10, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var batch *delivery.Batch
	select {
	case batch = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no batch")
	}
	if batch.Len() != 3 {
		t.Fatalf("batch of %d, want 3", batch.Len())
	}
	for i, r := range batch.Records {
		whole := batch.Message(i)
		if whole.UUID != msgs[i].UUID || string(r.Payload) != string(msgs[i].Payload) || !r.HasPosition ||
			r.Position != (schemas.Position{Topic: "calls", Partition: 0, Offset: int64(i)}) {
			t.Fatalf("record %d: %q at %+v, message %s", i, r.Payload, r.Position, whole.UUID)
		}
		for _, key := range []string{schemas.HeaderType, schemas.KeyMetadata, schemas.TopicMetadata, schemas.PartitionMetadata,
			schemas.OffsetMetadata, schemas.TimestampMetadata, "absent"} {
			if got, want := batch.Metadata(i, key), whole.Metadata.Get(key); got != want {
				t.Errorf("record %d: Metadata(%s) = %q, the message has %q", i, key, got, want)
			}
		}
	}
	if batch.Metadata(2, schemas.HeaderType) != "callstream.call.created.v1" || batch.Metadata(2, schemas.OffsetMetadata) != "2" {
		t.Fatalf("metadata lost: %v", batch.Message(2).Metadata)
	}
	batch.Ack()
	waitCommitted(t, b, "calls", "g", 3)
}
