package membus

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

func msg(i int) *message.Message { return message.NewMessage(strconv.Itoa(i), []byte(strconv.Itoa(i))) }

func receive(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return nil
}

// A burst is seen in publish order by every subscriber, and is handed out
// without waiting for acks (a batch sink holds many at once).
func TestOrderAndFanOutWithoutWaitingForAcks(t *testing.T) {
	b := New(Config{})
	defer b.Close()
	ctx := context.Background()
	s1, _ := b.Subscribe(ctx, "calls")
	s2, _ := b.Subscribe(ctx, "calls")
	const n = 5000
	go func() {
		for i := 0; i < n; i += 100 {
			batch := make([]*message.Message, 0, 100)
			for j := i; j < i+100; j++ {
				batch = append(batch, msg(j))
			}
			if err := b.Publish("calls", batch...); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for _, s := range []<-chan *message.Message{s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []*message.Message
			for i := 0; i < n; i++ {
				m := receive(t, s)
				if m.UUID != strconv.Itoa(i) {
					t.Errorf("message %d: got %s", i, m.UUID)
					return
				}
				held = append(held, m) // ack later, in bulk
			}
			for _, m := range held {
				m.Ack()
			}
		}()
	}
	wg.Wait()
}

func TestNackRedelivers(t *testing.T) {
	b := New(Config{})
	defer b.Close()
	s, _ := b.Subscribe(context.Background(), "t")
	if err := b.Publish("t", msg(1), msg(2)); err != nil {
		t.Fatal(err)
	}
	first := receive(t, s)
	first.Nack()
	second := receive(t, s)
	again := receive(t, s)
	if first.UUID != "1" || second.UUID != "2" || again.UUID != "1" {
		t.Fatalf("got %s, %s, %s; want 1, 2, then 1 again", first.UUID, second.UUID, again.UUID)
	}
	second.Ack()
	again.Ack()
}

func TestFullQueueBlocksPublish(t *testing.T) {
	b := New(Config{Buffer: 2})
	defer b.Close()
	s, _ := b.Subscribe(context.Background(), "t")
	done := make(chan error, 1)
	go func() { done <- b.Publish("t", msg(1), msg(2), msg(3), msg(4), msg(5)) }()
	select {
	case <-done:
		t.Fatal("Publish returned although the subscriber took nothing and its queue holds 2")
	case <-time.After(200 * time.Millisecond):
	}
	for i := 1; i <= 5; i++ {
		receive(t, s).Ack()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestUnsubscribeAndClose(t *testing.T) {
	b := New(Config{})
	ctx, cancel := context.WithCancel(context.Background())
	s, _ := b.Subscribe(ctx, "t")
	cancel()
	for range s { // closes
	}
	if err := b.Publish("t", msg(1)); err != nil { // no subscriber left: nothing blocks
		t.Fatal(err)
	}
	b.Close()
	if err := b.Publish("t", msg(1)); err != ErrClosed {
		t.Fatalf("Publish after Close: %v", err)
	}
	if _, err := b.Subscribe(context.Background(), "t"); err != ErrClosed {
		t.Fatalf("Subscribe after Close: %v", err)
	}
}
