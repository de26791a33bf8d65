package consumers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/callstream/callstream/schemas"
)

// funcBatch adapts a function to BatchHandler.
type funcBatch func(ctx context.Context, batch []Delivery) error

func (f funcBatch) HandleBatch(ctx context.Context, b []Delivery) error { return f(ctx, b) }

func delivery(i int) Delivery {
	e := testEvent(i)
	msg := message.NewMessage(e.EventID, nil)
	pos := schemas.Position{Partition: 0, Offset: int64(i)}
	schemas.SetPosition(msg.Metadata, pos)
	return Delivery{Event: e, Message: msg, Position: pos, HasPosition: true}
}

// runBatcher starts b and returns a stop function.
func runBatcher(b *batcher) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.run(ctx, context.Background()); close(done) }()
	return func() { cancel(); <-done }
}

// submit calls Do concurrently for items [0,n) and returns their results.
func submit(b *batcher, n int) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.Do(context.Background(), delivery(i))
		}()
	}
	wg.Wait()
	return errs
}

func TestBatcherSizes(t *testing.T) {
	tests := []struct {
		name      string
		size      int
		wait      time.Duration
		n         int
		wantMax   int
		wantTotal int
	}{
		{"full batches bounded by size", 4, time.Second, 12, 4, 12},
		{"a partial batch goes after the wait", 100, 30 * time.Millisecond, 7, 7, 7},
		{"size one is per message", 1, time.Second, 5, 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var sizes []int
			b := newBatcher(funcBatch(func(_ context.Context, batch []Delivery) error {
				mu.Lock()
				sizes = append(sizes, len(batch))
				mu.Unlock()
				return nil
			}), tt.size, tt.wait, nil)
			stop := runBatcher(b)
			defer stop()
			start := time.Now()
			for i, err := range submit(b, tt.n) {
				if err != nil {
					t.Fatalf("item %d: %v", i, err)
				}
			}
			if tt.wantMax == tt.size && time.Since(start) > tt.wait {
				t.Fatalf("full batches waited for the timer (%s)", time.Since(start))
			}
			total, biggest := 0, 0
			for _, s := range sizes {
				total += s
				biggest = max(biggest, s)
			}
			if total != tt.wantTotal || biggest > tt.wantMax {
				t.Fatalf("batch sizes %v: total %d (want %d), max %d (want <= %d)", sizes, total, tt.wantTotal, biggest, tt.wantMax)
			}
		})
	}
}

func TestBatcherResults(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name    string
		handle  func(batch []Delivery) error
		wantErr func(i int, d Delivery) bool // whether item i must fail
	}{
		{"success acks all", func([]Delivery) error { return nil }, func(int, Delivery) bool { return false }},
		{"batch error fails all", func([]Delivery) error { return boom }, func(int, Delivery) bool { return true }},
		{"item errors fail only those items", func(batch []Delivery) error {
			errs := ItemErrors{}
			for i, d := range batch {
				if d.Event.CallKey == "call-0001" || d.Event.CallKey == "call-0004" {
					errs[i] = boom
				}
			}
			return &errs
		}, func(_ int, d Delivery) bool { return d.Event.CallKey == "call-0001" || d.Event.CallKey == "call-0004" }},
		{"panic fails all", func([]Delivery) error { panic("kaboom") }, func(int, Delivery) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBatcher(funcBatch(func(_ context.Context, batch []Delivery) error { return tt.handle(batch) }),
				3, 20*time.Millisecond, nil)
			stop := runBatcher(b)
			defer stop()
			for i, err := range submit(b, 6) {
				if want := tt.wantErr(i, delivery(i)); want != (err != nil) {
					t.Fatalf("item %d: err = %v, want failure %v", i, err, want)
				}
			}
		})
	}
}

// TestBatcherAnswersAfterHandleBatch proves no caller (hence no ack) gets its
// result before HandleBatch returned.
func TestBatcherAnswersAfterHandleBatch(t *testing.T) {
	release := make(chan struct{})
	b := newBatcher(funcBatch(func(context.Context, []Delivery) error {
		<-release
		return nil
	}), 2, time.Second, nil)
	stop := runBatcher(b)
	defer stop()
	got := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { got <- b.Do(context.Background(), delivery(i)) }()
	}
	select {
	case err := <-got:
		t.Fatalf("a caller returned (%v) while HandleBatch was still running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	for i := 0; i < 2; i++ {
		if err := <-got; err != nil {
			t.Fatal(err)
		}
	}
}

func TestBatcherSortsByPartitionAndOffset(t *testing.T) {
	var got []string
	b := newBatcher(funcBatch(func(_ context.Context, batch []Delivery) error {
		for _, d := range batch {
			got = append(got, d.Message.Metadata.Get(schemas.OffsetMetadata))
		}
		return nil
	}), 5, time.Second, nil)
	items := make([]*batchItem, 5)
	for i, off := range []int{4, 2, 0, 3, 1} {
		items[i] = &batchItem{d: delivery(off), res: make(chan error, 1)}
	}
	b.flush(context.Background(), items)
	want := "0 1 2 3 4"
	if s := strings.Join(got, " "); s != want {
		t.Fatalf("order %q, want %q", s, want)
	}
}
