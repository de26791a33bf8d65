package sqlitebus_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/sqlitebus"
)

// pageCount is the size of the database (with what the WAL holds) in pages.
func pageCount(t testing.TB, db *sql.DB) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow("PRAGMA page_count").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func retain(t testing.TB, b *sqlitebus.Bus) int64 {
	t.Helper()
	n, err := b.ApplyRetention(context.Background())
	if err != nil {
		t.Fatalf("ApplyRetention: %v", err)
	}
	return n
}

// consume acks n messages of topic for group and closes the subscription.
func consume(t testing.TB, b *sqlitebus.Bus, topic, group string, n int) {
	t.Helper()
	s := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: group, MaxInFlight: 100})
	ch, err := s.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		receive(t, ch, 5*time.Second).Ack()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRetention: a message goes only when it is older than Retention and
// every group of its topic committed past it; a topic no group reads (the
// DLQ) keeps everything.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	const retention = 300 * time.Millisecond
	b := openBus(t, sqlitebus.Config{Retention: retention, RetentionInterval: -1})
	pub := b.Publisher()
	publish(t, pub, "calls", simple("old", 10)...)
	publish(t, pub, "dlq", simple("poisoned", 5)...)
	consume(t, b, "calls", "a", 10)
	consume(t, b, "calls", "b", 4)
	waitCommitted(t, b, "calls", "b", 4)
	if n := retain(t, b); n != 0 {
		t.Fatalf("deleted %d messages younger than Retention", n)
	}
	time.Sleep(retention + 50*time.Millisecond)
	publish(t, pub, "calls", simple("new", 5)...)
	consume(t, b, "calls", "a", 5)

	if n := retain(t, b); n != 4 {
		t.Fatalf("deleted %d, want the 4 old messages group b committed", n)
	}
	if got := readAll(t, b, "calls", nil); len(got) != 11 || got[0] != "old-4" {
		t.Fatalf("after retention the log holds %v, want old-4 .. new-4", got)
	}
	if got := readAll(t, b, "dlq", nil); len(got) != 5 {
		t.Fatalf("the DLQ, which no group reads, holds %d of 5", len(got))
	}

	consume(t, b, "calls", "b", 6) // b commits the old ones, not the new
	waitCommitted(t, b, "calls", "b", 10)
	if n := retain(t, b); n != 6 {
		t.Fatalf("deleted %d, want the 6 other old messages", n)
	}
	if n := retain(t, b); n != 0 {
		t.Fatalf("deleted %d more: the new messages are younger than Retention", n)
	}
	if at, _ := b.OffsetsAt(ctx, "calls", time.Now().Add(-time.Hour)); at[0] != 10 {
		t.Errorf("OffsetsAt before everything = %v, want the log start 10", at)
	}
	if end, _ := b.EndOffsets(ctx, "calls"); end[0] != 15 {
		t.Errorf("EndOffsets = %v, want 15 (retention does not move the end)", end)
	}
	if lag, _ := b.Lag(ctx, "calls", "never"); lag != 5 {
		t.Errorf("Lag of a new group = %d, want the 5 kept", lag)
	}
	// A new group starting at the first offset gets the log start.
	ch, err := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "c"}).Subscribe(ctx, "calls")
	if err != nil {
		t.Fatal(err)
	}
	if m := receive(t, ch, 5*time.Second); offsetOf(t, m) != 10 {
		t.Errorf("new group starts at %d, want 10", offsetOf(t, m))
	}
}

// TestRetentionStaleGroup: a group that stopped subscribing and committing
// GroupRetention ago no longer holds messages back, unless it is
// subscribed in this process.
func TestRetentionStaleGroup(t *testing.T) {
	b := openBus(t, sqlitebus.Config{Retention: 50 * time.Millisecond, GroupRetention: 200 * time.Millisecond, RetentionInterval: -1})
	publish(t, b.Publisher(), "calls", simple("m", 10)...)
	consume(t, b, "calls", "gone", 2)
	waitCommitted(t, b, "calls", "gone", 2)
	idle := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "idle"})
	if _, err := idle.Subscribe(context.Background(), "calls"); err != nil { // registered at 0, commits nothing
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if n := retain(t, b); n != 0 {
		t.Fatalf("deleted %d while a subscribed group has committed nothing", n)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if n := retain(t, b); n != 0 {
		t.Fatalf("deleted %d: group idle subscribed just now, it is not stale", n)
	}
	time.Sleep(300 * time.Millisecond)
	if n := retain(t, b); n != 10 {
		t.Fatalf("deleted %d, want all 10: both groups are stale", n)
	}
}

// TestRetentionBoundsFile runs rounds of publish, consume and retention and
// checks that the file stops growing: deleted pages are reused.
func TestRetentionBoundsFile(t *testing.T) {
	const retention = 30 * time.Millisecond
	b := openBus(t, sqlitebus.Config{Retention: retention, RetentionInterval: -1})
	pub := b.Publisher()
	payload := make([]byte, 1000)
	db, err := sql.Open("sqlite", "file:"+pathOf(b)+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var sizes []int64
	for round := range 12 {
		msgs := make([]*message.Message, 500)
		for i := range msgs {
			msgs[i] = message.NewMessage(fmt.Sprintf("r%d-%d", round, i), payload)
		}
		publish(t, pub, "calls", msgs...)
		consume(t, b, "calls", "g", len(msgs))
		waitCommitted(t, b, "calls", "g", int64(500*(round+1)))
		time.Sleep(retention + 10*time.Millisecond)
		retain(t, b)
		sizes = append(sizes, pageCount(t, db))
	}
	t.Logf("database pages after each round: %v", sizes)
	if last, early := sizes[len(sizes)-1], sizes[2]; last > early+early/4 {
		t.Fatalf("database grew from %d to %d pages over rounds 3..12 with everything consumed and expired", early, last)
	}
}
