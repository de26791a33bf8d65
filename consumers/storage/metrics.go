package storage

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the storage consumer's own figures; the runtime already counts
// deliveries, retries, batch sizes and DLQ sends.
type metrics struct {
	batches  *prometheus.CounterVec
	events   *prometheus.CounterVec
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
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
	if reg == nil {
		return m
	}
	m.batches = registerOrReuse(reg, m.batches)
	m.events = registerOrReuse(reg, m.events)
	m.duration = registerOrReuse(reg, m.duration)
	return m
}

// registerOrReuse returns the collector already registered under the same
// name, so a store reopened with the same Registerer (tests, a restart
// within one process) keeps counting in the same series.
func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
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
