package webhooks

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	attempts *prometheus.CounterVec   // endpoint, class (2xx, 4xx, 5xx, 3xx, error)
	outcomes *prometheus.CounterVec   // endpoint, outcome (delivered, dlq)
	latency  *prometheus.HistogramVec // endpoint
	queued   *prometheus.GaugeVec     // endpoint
	spilled  *prometheus.GaugeVec     // endpoint
	open     *prometheus.GaugeVec     // endpoint: 1 while the breaker is open
	disabled *prometheus.GaugeVec     // endpoint: 1 once disabled
	saves    *prometheus.HistogramVec // kind: segment, snapshot
	saved    *prometheus.CounterVec   // kind: bytes written
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "callstream", Subsystem: "webhooks", Name: "attempts_total",
			Help: "Delivery attempts by endpoint and response class.",
		}, []string{"endpoint", "class"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "callstream", Subsystem: "webhooks", Name: "outcomes_total",
			Help: "Finished deliveries by endpoint and outcome (delivered, dlq).",
		}, []string{"endpoint", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "callstream", Subsystem: "webhooks", Name: "attempt_duration_seconds",
			Help:    "Duration of one delivery attempt.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"endpoint"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "callstream", Subsystem: "webhooks", Name: "queued",
			Help: "Events waiting for delivery (including retries) by endpoint.",
		}, []string{"endpoint"}),
		spilled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "callstream", Subsystem: "webhooks", Name: "spilled",
			Help: "Events beyond the in-memory queue, kept in the state store until there is room, by endpoint.",
		}, []string{"endpoint"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "callstream", Subsystem: "webhooks", Name: "breaker_open",
			Help: "1 while the endpoint's circuit breaker is open.",
		}, []string{"endpoint"}),
		disabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "callstream", Subsystem: "webhooks", Name: "endpoint_disabled",
			Help: "1 once the endpoint has been disabled.",
		}, []string{"endpoint"}),
		saves: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "callstream", Subsystem: "webhooks", Name: "state_save_seconds",
			Help:    "Duration of durable queue saves by kind (segment, snapshot).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}, []string{"kind"}),
		saved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "callstream", Subsystem: "webhooks", Name: "state_saved_bytes_total",
			Help: "Bytes written to the durable queue by kind (segment, snapshot).",
		}, []string{"kind"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.attempts, m.outcomes, m.latency, m.queued, m.spilled, m.open, m.disabled, m.saves, m.saved} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("webhooks: register metrics: %w", err)
		}
	}
	return m, nil
}
