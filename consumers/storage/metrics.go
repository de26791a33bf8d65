package storage

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/telemetry"
)

// metrics are the storage consumer's own figures; the runtime already counts
// deliveries, retries, batch sizes and DLQ sends.
type metrics struct {
	batches  *prometheus.CounterVec
	events   *prometheus.CounterVec
	duration prometheus.Histogram
}

// newMetrics builds the storage metrics and registers them with reg, when
// not nil; a second sink on the same registry shares the first one's.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_storage_batches_total",
			Help: "Batches written, by result: ok, partial (some events refused) or error (nothing written).",
		}, []string{"result"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_storage_events_total",
			Help: "Events handled, by outcome: applied (row inserted or moved to a newer revision), superseded (an equal or newer revision was already stored or in the batch) or refused.",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "callstream_storage_batch_duration_seconds",
			Help:    "Time to write one batch, transaction commit included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	r := telemetry.NewRegistrar(reg)
	telemetry.Reuse(r, &m.batches)
	telemetry.Reuse(r, &m.events)
	telemetry.Reuse(r, &m.duration)
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("storage: register metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) observe(start time.Time, result string, events int, applied int64, refused int) {
	m.duration.Observe(time.Since(start).Seconds())
	m.batches.WithLabelValues(result).Inc()
	if result == "error" {
		return
	}
	m.events.WithLabelValues("applied").Add(float64(applied))
	m.events.WithLabelValues("refused").Add(float64(refused))
	if rest := events - int(applied) - refused; rest > 0 {
		m.events.WithLabelValues("superseded").Add(float64(rest))
	}
}
