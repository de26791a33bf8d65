package alerting

import (
	"fmt"
	"os"
	"testing"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/consumers/consumerstest"
	"github.com/callstream/callstream/schemas"
)

// TestBenchFromBroker is the alerting plug-in inside the consumer runtime
// on the real broker (issue 15: goal 200k events/s), with the default
// rules over the 1,000 orgs of benchStream. Figures only.
//
//	CALLSTREAM_BENCH=1 go test -run TestBenchFromBroker -v ./consumers/alerting
func TestBenchFromBroker(t *testing.T) {
	if os.Getenv("CALLSTREAM_BENCH") != "1" {
		t.Skip("set CALLSTREAM_BENCH=1 to run the benchmark")
	}
	n := consumerstest.Events(200_000)
	s := newBenchStream()
	events := make([]schemas.CallEvent, n)
	for i := range events {
		events[i] = *s.at(i)
		events[i].EventID = fmt.Sprintf("00000000-0000-5000-8000-%012d", i)
		events[i].ObservedAt = events[i].CreationTime
		events[i].Raw = []byte(`{}`)
	}
	cfg := benchConfig(DefaultRules())
	r := consumerstest.FromBroker(t, consumers.Factory{Name: Name, New: func(deps consumers.Deps) (consumers.Plugin, error) {
		return New(cfg, deps)
	}}, events, 6, nil)
	fmt.Printf("BENCH alerting from broker (default rules, 1,000 orgs): %s\n", r)
}
