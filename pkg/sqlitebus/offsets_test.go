package sqlitebus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/sqlitebus"
)

func readAll(t testing.TB, b *sqlitebus.Bus, topic string, from map[int]int64) []string {
	t.Helper()
	var got []string
	if err := b.ReadRange(context.Background(), topic, from, func(v []byte) error {
		got = append(got, string(v))
		return nil
	}); err != nil {
		t.Fatalf("ReadRange: %v", err)
	}
	return got
}

func TestOffsets(t *testing.T) {
	ctx := context.Background()
	b := openBus(t, sqlitebus.Config{})
	pub := b.Publisher()
	beforeAll := time.Now()
	publish(t, pub, "calls", simple("a", 3)...)
	time.Sleep(20 * time.Millisecond)
	between := time.Now()
	time.Sleep(20 * time.Millisecond)
	publish(t, pub, "calls", simple("b", 2)...)

	if end, err := b.EndOffsets(ctx, "calls"); err != nil || len(end) != 1 || end[0] != 5 {
		t.Fatalf("EndOffsets = %v, %v; want {0: 5}", end, err)
	}
	for _, tt := range []struct {
		name string
		at   time.Time
		want int64
	}{
		{"before everything", beforeAll.Add(-time.Hour), 0},
		{"between the publishes", between, 3},
		{"after everything", time.Now().Add(time.Hour), 5},
	} {
		got, err := b.OffsetsAt(ctx, "calls", tt.at)
		if err != nil || got[0] != tt.want {
			t.Errorf("OffsetsAt %s = %v, %v; want {0: %d}", tt.name, got, err, tt.want)
		}
	}

	if got := readAll(t, b, "calls", map[int]int64{0: 3}); fmt.Sprint(got) != "[b-0 b-1]" {
		t.Errorf("ReadRange from 3 = %v", got)
	}
	if got := readAll(t, b, "calls", nil); len(got) != 5 || got[0] != "a-0" {
		t.Errorf("ReadRange from the start = %v", got)
	}
	// The range ends at the end offset seen at the call.
	n := 0
	err := b.ReadRange(ctx, "calls", nil, func([]byte) error {
		if n == 0 {
			publish(t, pub, "calls", simple("late", 1)...)
		}
		n++
		return nil
	})
	if err != nil || n != 5 {
		t.Errorf("ReadRange while publishing read %d (%v), want the 5 there at the call", n, err)
	}
	stop := errors.New("stop")
	if err := b.ReadRange(ctx, "calls", nil, func([]byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("ReadRange returned %v, want fn's error", err)
	}

	// Lag and committed offsets.
	if lag, err := b.Lag(ctx, "calls", "g"); err != nil || lag != 6 {
		t.Errorf("Lag of a group that never subscribed = %d, %v; want 6", lag, err)
	}
	if c, err := b.CommittedOffsets(ctx, "calls", "g"); err != nil || len(c) != 0 {
		t.Errorf("CommittedOffsets of an unknown group = %v, %v; want none", c, err)
	}
	s := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g"})
	ch, err := s.Subscribe(ctx, "calls")
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		receive(t, ch, 5*time.Second).Ack()
	}
	waitCommitted(t, b, "calls", "g", 4)
	if lag, err := b.Lag(ctx, "calls", "g"); err != nil || lag != 2 {
		t.Errorf("Lag = %d, %v; want 2", lag, err)
	}

	// Replay from an offset: refused while the group is subscribed here,
	// then its next subscription starts there.
	if err := b.SetCommitted(ctx, "calls", "g", map[int]int64{0: 1}); err == nil {
		t.Error("SetCommitted while the group is subscribed succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.SetCommitted(ctx, "calls", "g", map[int]int64{0: 1}); err != nil {
		t.Fatal(err)
	}
	ch, err = newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g"}).Subscribe(ctx, "calls")
	if err != nil {
		t.Fatal(err)
	}
	if m := receive(t, ch, 5*time.Second); offsetOf(t, m) != 1 {
		t.Errorf("after SetCommitted 1 the group resumed at %d", offsetOf(t, m))
	}
	for _, bad := range []map[int]int64{{}, {1: 0}, {0: -1}, {0: 1, 1: 1}} {
		if err := b.SetCommitted(ctx, "calls", "other", bad); err == nil {
			t.Errorf("SetCommitted %v succeeded", bad)
		}
	}
}

// TestUnknownTopicIsEmpty: topics are created on first use, so the offset
// helpers read a topic the file lacks as an empty one.
func TestUnknownTopicIsEmpty(t *testing.T) {
	ctx := context.Background()
	b := openBus(t, sqlitebus.Config{})
	if end, err := b.EndOffsets(ctx, "nope"); err != nil || end[0] != 0 || len(end) != 1 {
		t.Errorf("EndOffsets = %v, %v", end, err)
	}
	if at, err := b.OffsetsAt(ctx, "nope", time.Now()); err != nil || at[0] != 0 || len(at) != 1 {
		t.Errorf("OffsetsAt = %v, %v", at, err)
	}
	if got := readAll(t, b, "nope", nil); len(got) != 0 {
		t.Errorf("ReadRange = %v", got)
	}
	if lag, err := b.Lag(ctx, "nope", "g"); err != nil || lag != 0 {
		t.Errorf("Lag = %d, %v", lag, err)
	}
}
