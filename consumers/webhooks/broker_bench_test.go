package webhooks

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/callstream/callstream/consumers/consumerstest"
	"github.com/callstream/callstream/schemas"
)

// TestBenchFromBroker is the webhooks plug-in inside the consumer runtime
// on the real broker, signing and delivering every event to a local
// listener (issue 15: goal 5k deliveries/s), timed until the listener has
// received every event. Figures only.
//
//	CALLSTREAM_BENCH=1 go test -run TestBenchFromBroker -v ./consumers/webhooks
func TestBenchFromBroker(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1 to run the benchmark")
	}
	n := consumerstest.Events(50_000)
	var got atomic.Int64
	l := newListener(t, nil)
	l.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	events := make([]schemas.CallEvent, n)
	for i := range events {
		events[i] = testEvent(i, "call-"+strconv.Itoa(i), 1)
	}
	cfg := testConfig(EndpointConfig{Name: "bench", URL: l.srv.URL, Secrets: Secrets{newSecret(t)}, Concurrency: 16, QueueSize: 4096})
	r := consumerstest.FromBroker(t, Factory(cfg), events, 6, func() bool { return got.Load() >= int64(n) })
	fmt.Printf("BENCH webhooks from broker, signed, to a local listener: %s delivered\n", r)
}
