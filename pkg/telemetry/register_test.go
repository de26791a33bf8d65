package telemetry

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterOrReuse(t *testing.T) {
	reg := prometheus.NewRegistry()
	newCounter := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "callstream_test_reuse_total", Help: "h"})
	}
	first, err := RegisterOrReuse(reg, newCounter())
	if err != nil {
		t.Fatal(err)
	}
	second, err := RegisterOrReuse(reg, newCounter())
	if err != nil || second != first {
		t.Fatalf("second registration: got a different collector or %v; want the first one reused", err)
	}
	// Same name, other help: a real conflict, reported.
	clash := prometheus.NewGauge(prometheus.GaugeOpts{Name: "callstream_test_reuse_total", Help: "other"})
	if _, err := RegisterOrReuse(reg, clash); err == nil {
		t.Fatal("a conflicting collector registered without error")
	}
	if c, err := RegisterOrReuse[prometheus.Counter](nil, newCounter()); err != nil || c == nil {
		t.Fatalf("nil registry: %v", err)
	}
}
