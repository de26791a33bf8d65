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
)

// TestBenchDeliveryThroughput measures deliveries per second, signed, to a
// local listener, through Handle (durable queue on a file store with fsync)
// and the delivery workers. Set CALLSTREAM_BENCH=1 to run it.
func TestBenchDeliveryThroughput(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1 to run benchmarks")
	}
	n := 50000
	if v, err := strconv.Atoi(os.Getenv("CALLSTREAM_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
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

	work := make(chan int, 1024)
	var wg sync.WaitGroup
	cpu0 := cpuTime(t)
	begin := time.Now()
	for range p.Tuning().MaxInFlight { // as many Handles at once as the runtime runs
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
	handled := time.Since(begin)
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("only %d of %d delivered", got.Load(), n)
	}
	elapsed := time.Since(begin)
	cpu := cpuTime(t) - cpu0
	p.stop(t)
	t.Logf("BENCH webhooks delivery: %d signed deliveries in %s = %.0f deliveries/s (Handle side %.0f events/s, %d state saves)",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), float64(n)/handled.Seconds(), store.saves.Load())
	// Other processes share this machine; CPU time per delivery (sender,
	// durable queue and the in-process listener together) does not depend
	// on their load.
	t.Logf("BENCH webhooks delivery: %.0f µs of CPU per delivery = %.0f deliveries/s per fully available core",
		float64(cpu.Microseconds())/float64(n), float64(n)/cpu.Seconds())
}

// BenchmarkSign is the cost of one webhook-signature with one secret over
// a typical call event body.
func BenchmarkSign(b *testing.B) {
	s, err := newSigner([]string{vectorSecret})
	if err != nil {
		b.Fatal(err)
	}
	body := delivery(b, testEvent(1, "call-1", 1)).Message.Payload
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		s.sign("00000000-0000-5000-8000-000000000001", 1700000000, body)
	}
}
