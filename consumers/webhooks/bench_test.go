package webhooks

import (
	"context"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callstream/callstream/consumers"
)

// TestBenchDeliveryThroughput measures deliveries per second, signed, to a
// local listener, through the durable queue (a file store with fsync) and
// the delivery workers: fed in batches through HandleBatch as the runtime
// does, and, as the baseline in the same run, one event per call through
// Handle, as many at once as the runtime ran before the batch path. Set
// CALLSTREAM_BENCH=1 to run it.
func TestBenchDeliveryThroughput(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1 to run benchmarks")
	}
	n := 50000
	if v, err := strconv.Atoi(os.Getenv("CALLSTREAM_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	perEvent := benchDelivery(t, n, false)
	batched := benchDelivery(t, n, true)
	t.Logf("BENCH webhooks delivery: batches %.0f deliveries/s, per event (baseline) %.0f deliveries/s, ratio %.2f",
		batched, perEvent, batched/perEvent)
}

func benchDelivery(t *testing.T, n int, batches bool) float64 {
	var got atomic.Int64
	done := make(chan struct{})
	l := newListener(t, nil)
	l.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Count without recording, so the listener stays cheap.
		if got.Add(1) == int64(n) {
			close(done)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	cfg := testConfig(EndpointConfig{Name: "bench", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, Concurrency: 16, QueueSize: 4096})
	store := newFileStore(t)
	p := start(t, cfg, store, newDLQ(t))
	mode := "per event"
	cpu0 := cpuTime(t)
	begin := time.Now()
	if batches {
		mode = "batches"
		size := p.Tuning().BatchSize
		for i := 0; i < n; i += size {
			var batch []consumers.Delivery
			for j := i; j < min(i+size, n); j++ {
				batch = append(batch, delivery(t, testEvent(j, "call-"+strconv.Itoa(j), 1)))
			}
			if err := p.HandleBatch(context.Background(), batch); err != nil {
				t.Fatalf("HandleBatch: %v", err)
			}
		}
	} else {
		work := make(chan int, 1024)
		var wg sync.WaitGroup
		for range 512 { // as many Handles at once as the runtime ran per event
			wg.Go(func() {
				for i := range work {
					if err := p.Handle(context.Background(), delivery(t, testEvent(i, "call-"+strconv.Itoa(i), 1))); err != nil {
						t.Errorf("Handle: %v", err)
					}
				}
			})
		}
		for i := range n {
			work <- i
		}
		close(work)
		wg.Wait()
	}
	handled := time.Since(begin)
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("only %d of %d delivered", got.Load(), n)
	}
	elapsed := time.Since(begin)
	cpu := cpuTime(t) - cpu0
	p.stop(t)
	rate := float64(n) / elapsed.Seconds()
	t.Logf("BENCH webhooks delivery, %s: %d signed deliveries in %s = %.0f deliveries/s (queueing side %.0f events/s, %d state saves)",
		mode, n, elapsed.Round(time.Millisecond), rate, float64(n)/handled.Seconds(), store.saves.Load())
	// Other processes share this machine; CPU time per delivery (sender,
	// durable queue and the in-process listener together) does not depend
	// on their load.
	t.Logf("BENCH webhooks delivery, %s: %.0f µs of CPU per delivery = %.0f deliveries/s per fully available core",
		mode, float64(cpu.Microseconds())/float64(n), float64(n)/cpu.Seconds())
	return rate
}

// BenchmarkSign is the cost of one webhook-signature with one secret over
// a typical call event body.
func BenchmarkSign(b *testing.B) {
	s, err := newSigner([]string{vectorSecret})
	if err != nil {
		b.Fatal(err)
	}
	body := delivery(b, testEvent(1, "call-1", 1)).Payload
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		s.sign("00000000-0000-5000-8000-000000000001", 1700000000, body)
	}
}
