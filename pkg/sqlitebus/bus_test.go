package sqlitebus_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/sqlitebus"
	"github.com/callstream/callstream/schemas"
)

func TestRoundTrip(t *testing.T) {
	b := openBus(t, sqlitebus.Config{})
	pub := b.Publisher()
	keyed := message.NewMessage("uuid-keyed", []byte(`{"a":1}`))
	keyed.Metadata = message.Metadata{schemas.KeyMetadata: "call-7", "ce_type": "callstream.call.created.v1", "empty": ""}
	// A message published again after a delivery carries a stale position:
	// the new delivery shows its new one.
	replayed := message.NewMessage("uuid-replayed", nil)
	schemas.SetPosition(replayed.Metadata, schemas.Position{Topic: "elsewhere", Partition: 3, Offset: 99})
	before := time.Now().UTC()
	publish(t, pub, "calls", keyed, replayed)
	publish(t, pub, "calls", message.NewMessage("uuid-third", []byte("x")))
	after := time.Now().UTC()

	sub := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g"})
	ch, err := sub.Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []*message.Message{keyed, replayed, message.NewMessage("uuid-third", []byte("x"))} {
		m := receive(t, ch, 5*time.Second)
		if m.UUID != want.UUID || string(m.Payload) != string(want.Payload) {
			t.Fatalf("message %d: %s %q, want %s %q", i, m.UUID, m.Payload, want.UUID, want.Payload)
		}
		pos, ok := schemas.PositionOf(m.Metadata)
		if !ok || pos != (schemas.Position{Topic: "calls", Partition: 0, Offset: int64(i)}) {
			t.Fatalf("message %d: position %+v (%v), want calls/0/%d", i, pos, ok, i)
		}
		ts, err := time.Parse(time.RFC3339Nano, m.Metadata[schemas.TimestampMetadata])
		if err != nil || ts.Before(before.Truncate(time.Microsecond)) || ts.After(after) {
			t.Fatalf("message %d: timestamp %q (%v), want between %s and %s", i, m.Metadata[schemas.TimestampMetadata], err, before, after)
		}
		for k, v := range want.Metadata {
			if k == schemas.TopicMetadata || k == schemas.PartitionMetadata || k == schemas.OffsetMetadata {
				continue
			}
			if got, ok := m.Metadata[k]; !ok || got != v {
				t.Fatalf("message %d: metadata %s = %q (%v), want %q", i, k, got, ok, v)
			}
		}
		if _, ok := m.Metadata[schemas.KeyMetadata]; ok != (i == 0) {
			t.Fatalf("message %d: key present %v, want %v", i, ok, i == 0)
		}
		m.Ack()
	}
	waitCommitted(t, b, "calls", "g", 3)
}

func TestTooLarge(t *testing.T) {
	b := openBus(t, sqlitebus.Config{MaxMessageBytes: 1000})
	pub := b.Publisher()
	small := message.NewMessage("u1", make([]byte, 100))
	big := message.NewMessage("u2", make([]byte, 1000))
	err := pub.Publish("calls", small, big)
	if !errors.Is(err, schemas.ErrTooLarge) {
		t.Fatalf("Publish of a message over the limit: %v, want an error wrapping schemas.ErrTooLarge", err)
	}
	if !strings.Contains(err.Error(), "u2") {
		t.Errorf("error %q does not name the message", err)
	}
	// Metadata counts too.
	md := message.NewMessage("u3", make([]byte, 100))
	md.Metadata.Set("big", strings.Repeat("x", 1000))
	if err := pub.Publish("calls", md); !errors.Is(err, schemas.ErrTooLarge) {
		t.Fatalf("Publish of metadata over the limit: %v, want schemas.ErrTooLarge", err)
	}
	end, err := b.EndOffsets(context.Background(), "calls")
	if err != nil || end[0] != 0 {
		t.Fatalf("after refused Publishes: end %v (%v), want nothing written", end, err)
	}
	publish(t, pub, "calls", small)
	if end, _ := b.EndOffsets(context.Background(), "calls"); end[0] != 1 {
		t.Fatalf("end %v, want 1", end)
	}

	// The default is Kafka's: 1 MiB.
	d := openBus(t, sqlitebus.Config{})
	if err := d.Publisher().Publish("calls", message.NewMessage("u", make([]byte, 1<<20+1))); !errors.Is(err, schemas.ErrTooLarge) {
		t.Fatalf("default limit: %v, want schemas.ErrTooLarge for 1 MiB + 1", err)
	}
	publish(t, d.Publisher(), "calls", message.NewMessage("u", make([]byte, 1<<20-10)))
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  sqlitebus.Config
		want string
	}{
		{"no path", sqlitebus.Config{}, "Path is empty"},
		{"uri characters", sqlitebus.Config{Path: dir + "/a?b"}, "'?'"},
		{"limit over the cap", sqlitebus.Config{Path: dir + "/a", MaxMessageBytes: sqlitebus.MaxMessageBytesCap + 1}, "MaxMessageBytes"},
		{"negative limit", sqlitebus.Config{Path: dir + "/a", MaxMessageBytes: -1}, "MaxMessageBytes"},
		{"negative retention", sqlitebus.Config{Path: dir + "/a", Retention: -time.Second}, "Retention"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := sqlitebus.Open(context.Background(), tt.cfg)
			if err == nil {
				_ = b.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	b := openBus(t, sqlitebus.Config{})
	if _, err := b.Subscriber(sqlitebus.SubscriberConfig{InitialOffset: "middle"}); err == nil || !strings.Contains(err.Error(), "middle") {
		t.Fatalf("Subscriber with InitialOffset middle: %v", err)
	}
	s := newSubscriber(t, b, sqlitebus.SubscriberConfig{})
	if _, err := s.SubscribeBatches(context.Background(), "t", 0, 0); err == nil {
		t.Fatal("SubscribeBatches with maxMessages 0 succeeded")
	}
	if _, err := s.Subscribe(context.Background(), ""); err == nil {
		t.Fatal("Subscribe to an empty topic succeeded")
	}
}

// TestCommitOnlyAckedPrefix acks out of order and checks that the
// committed offset never passes an unacked message, survives a reopen of
// the file, and that the next subscription resumes there.
func TestCommitOnlyAckedPrefix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bus.db")
	b, err := sqlitebus.Open(context.Background(), sqlitebus.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b.Publisher(), "calls", simple("m", 10)...)
	sub := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g", MaxInFlight: 10})
	ch, err := sub.Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	var got []*message.Message
	for range 10 {
		got = append(got, receive(t, ch, 5*time.Second))
	}
	for i := 9; i >= 4; i-- { // 4..9 acked, 0..3 not
		got[i].Ack()
	}
	got[1].Ack()
	got[0].Ack()
	waitCommitted(t, b, "calls", "g", 2)
	time.Sleep(50 * time.Millisecond) // let any wrong commit land
	if c := committed(t, b, "calls", "g"); c != 2 {
		t.Fatalf("committed %d with offsets 2 and 3 unacked, want 2", c)
	}
	got[3].Ack()
	if err := b.Close(); err != nil { // offset 2 was never acked
		t.Fatal(err)
	}

	b = openBus(t, sqlitebus.Config{Path: path})
	if c := committed(t, b, "calls", "g"); c != 2 {
		t.Fatalf("after reopen: committed %d, want 2", c)
	}
	ch, err = newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g", MaxInFlight: 10}).Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	if m := receive(t, ch, 5*time.Second); offsetOf(t, m) != 2 || m.UUID != "m-uuid-2" {
		t.Fatalf("resumed at offset %d (%s), want 2", offsetOf(t, m), m.UUID)
	}
}

// TestNackRedelivers checks that a nacked message comes again, after
// NackResendSleep, at the same position, while later ones go on, and that
// the commit waits for it.
func TestNackRedelivers(t *testing.T) {
	b := openBus(t, sqlitebus.Config{})
	publish(t, b.Publisher(), "calls", simple("m", 3)...)
	const sleep = 200 * time.Millisecond
	sub := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g", MaxInFlight: 3, NackResendSleep: sleep})
	ch, err := sub.Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	first := receive(t, ch, 5*time.Second)
	nackedAt := time.Now()
	first.Nack()
	for i := 1; i < 3; i++ {
		m := receive(t, ch, 5*time.Second)
		if offsetOf(t, m) != int64(i) {
			t.Fatalf("got offset %d, want %d", offsetOf(t, m), i)
		}
		m.Ack()
	}
	again := receive(t, ch, 5*time.Second)
	if since := time.Since(nackedAt); since < sleep {
		t.Fatalf("redelivered after %s, before NackResendSleep %s", since, sleep)
	}
	if offsetOf(t, again) != 0 || again.UUID != first.UUID {
		t.Fatalf("redelivered offset %d %s, want offset 0 %s", offsetOf(t, again), again.UUID, first.UUID)
	}
	if c := committed(t, b, "calls", "g"); c != 0 {
		t.Fatalf("committed %d while offset 0 is unacked", c)
	}
	again.Ack()
	waitCommitted(t, b, "calls", "g", 3)
}

// TestStrictOrder checks MaxInFlight 1: the next message only after the
// ack, and a nacked message before anything after it.
func TestStrictOrder(t *testing.T) {
	b := openBus(t, sqlitebus.Config{})
	publish(t, b.Publisher(), "calls", simple("m", 3)...)
	ch, err := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g"}).Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch, 5*time.Second)
	nothing(t, ch, 100*time.Millisecond, "MaxInFlight 1 and nothing acked")
	m.Nack()
	if m = receive(t, ch, 5*time.Second); offsetOf(t, m) != 0 {
		t.Fatalf("after a nack got offset %d, want 0 again", offsetOf(t, m))
	}
	m.Ack()
	for want := int64(1); want < 3; want++ {
		if m = receive(t, ch, 5*time.Second); offsetOf(t, m) != want {
			t.Fatalf("got offset %d, want %d", offsetOf(t, m), want)
		}
		m.Ack()
	}
}

// TestStandbyMember checks that two subscriptions of one group take turns:
// the second delivers nothing while the first runs, then resumes at the
// first one's committed offset.
func TestStandbyMember(t *testing.T) {
	b := openBus(t, sqlitebus.Config{})
	publish(t, b.Publisher(), "calls", simple("m", 4)...)
	s1 := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g"})
	s2 := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g"})
	ch1, err := s1.Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	ch2, err := s2.Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		receive(t, ch1, 5*time.Second).Ack()
	}
	nothing(t, ch2, 100*time.Millisecond, "the group's other member is active")
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, ch2, 5*time.Second); offsetOf(t, m) != 2 {
		t.Fatalf("standby resumed at %d, want 2", offsetOf(t, m))
	}
}

func TestNoGroupInitialOffset(t *testing.T) {
	b := openBus(t, sqlitebus.Config{})
	pub := b.Publisher()
	publish(t, pub, "calls", simple("old", 2)...)
	first, err := newSubscriber(t, b, sqlitebus.SubscriberConfig{}).Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	last, err := newSubscriber(t, b, sqlitebus.SubscriberConfig{InitialOffset: sqlitebus.OffsetLast}).Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	publish(t, pub, "calls", simple("new", 1)...)
	for _, want := range []int64{0, 1, 2} {
		m := receive(t, first, 5*time.Second)
		if offsetOf(t, m) != want {
			t.Fatalf("first: offset %d, want %d", offsetOf(t, m), want)
		}
		m.Ack()
	}
	if m := receive(t, last, 5*time.Second); offsetOf(t, m) != 2 {
		t.Fatalf("last: offset %d, want 2", offsetOf(t, m))
	}
	if c := committed(t, b, "calls", ""); c != -1 {
		t.Fatalf("a subscription without a group committed %d", c)
	}
}

// TestGroupLastRegistersAtSubscribe checks that a group starting at the
// end is placed there when Subscribe returns: a message published right
// after is delivered, even across a restart before the first commit.
func TestGroupLastRegistersAtSubscribe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bus.db")
	b := openBus(t, sqlitebus.Config{Path: path})
	publish(t, b.Publisher(), "calls", simple("old", 3)...)
	s := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g", InitialOffset: sqlitebus.OffsetLast})
	if _, err := s.Subscribe(context.Background(), "calls"); err != nil {
		t.Fatal(err)
	}
	if c := committed(t, b, "calls", "g"); c != 3 {
		t.Fatalf("group starting at the end registered at %d, want 3", c)
	}
	_ = s.Close()
	publish(t, b.Publisher(), "calls", simple("new", 1)...)
	ch, err := newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: "g", InitialOffset: sqlitebus.OffsetLast}).Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	if m := receive(t, ch, 5*time.Second); m.UUID != "new-uuid-0" {
		t.Fatalf("got %s, want the message published between the subscriptions", m.UUID)
	}
}
