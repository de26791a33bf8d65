package kafkabus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// batcher is the shape of a batching sink: a handler adds its message to
// the current batch and returns only once that batch was flushed, so the
// Router acks only durable messages.
type batcher struct {
	mu      sync.Mutex
	size    int
	pending int
	flushed chan struct{} // closed when the current batch is flushed
	total   int
	batches int
}

func (b *batcher) handle(msg *message.Message) error {
	b.mu.Lock()
	done := b.flushed
	b.pending++
	b.total++
	if b.pending == b.size {
		b.batches++
		b.pending = 0
		close(b.flushed)
		b.flushed = make(chan struct{})
	}
	b.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-msg.Context().Done():
		return msg.Context().Err()
	}
}

// TestRouterBatchSinkPipelined runs a watermill Router over a pipelined
// subscription whose handler blocks until a batch of 10 is complete: this
// only finishes if the Subscriber keeps enough messages in flight, and every
// offset must end up committed.
func TestRouterBatchSinkPipelined(t *testing.T) {
	const total, batch, partitions = 200, 10, 2
	f := newFixture(t, partitions)
	f.publishN(f.publisher(), total, nil)

	b := &batcher{size: batch, flushed: make(chan struct{})}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	router.AddConsumerHandler("batch-sink", f.topic, f.subscriber(2*batch), b.handle)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(ctx) }()
	<-router.Running()

	committedSum := func() int64 {
		sum := int64(0)
		for _, o := range f.committed(partitions) {
			if o > 0 {
				sum += o
			}
		}
		return sum
	}
	// Every batch flushes and, as the Router acks each returned handler,
	// every offset gets committed while the Router still runs.
	deadline := time.Now().Add(30 * time.Second)
	for committedSum() != total {
		if time.Now().After(deadline) {
			b.mu.Lock()
			batches := b.batches
			b.mu.Unlock()
			t.Fatalf("flushed %d of %d batches, committed %d of %d offsets", batches, total/batch, committedSum(), total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := router.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.total != total || b.batches != total/batch {
		t.Fatalf("handled %d messages in %d batches, want %d in %d", b.total, b.batches, total, total/batch)
	}
}
