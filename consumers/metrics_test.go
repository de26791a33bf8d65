package consumers

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// TestCountObservesEveryMessage: a batch's processing time is observed
// once per message it finished, whatever the outcome, so the histogram's
// count matches the messages counter.
func TestCountObservesEveryMessage(t *testing.T) {
	tests := []struct{ handled, poisoned, failed int }{{3, 0, 0}, {0, 2, 0}, {0, 0, 4}, {3, 2, 1}}
	for _, tt := range tests {
		m, err := newMetrics(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		lm := m.lane("p")
		lm.count(tt.handled, tt.poisoned, tt.failed, 10*time.Millisecond)
		for outcome, want := range map[string]int{outcomeHandled: tt.handled, outcomePoisoned: tt.poisoned, outcomeFailed: tt.failed} {
			if got := testutil.ToFloat64(m.messages.WithLabelValues("p", outcome)); got != float64(want) {
				t.Errorf("%+v: %s = %v, want %d", tt, outcome, got, want)
			}
		}
		var h dto.Metric
		if err := lm.processing.(prometheus.Histogram).Write(&h); err != nil {
			t.Fatal(err)
		}
		if n, want := h.GetHistogram().GetSampleCount(), uint64(tt.handled+tt.poisoned+tt.failed); n != want {
			t.Errorf("%+v: %d processing observations, want %d", tt, n, want)
		}
		if sum, want := h.GetHistogram().GetSampleSum(), 0.01*float64(tt.handled+tt.poisoned+tt.failed); sum < want-1e-9 || sum > want+1e-9 {
			t.Errorf("%+v: processing seconds sum %v, want %v", tt, sum, want)
		}
	}
}
