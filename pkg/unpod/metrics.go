package unpod

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/telemetry"
)

// metrics are the client's Prometheus series. Labels hold the endpoint and
// the status code, never the token.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_unpod_requests_total",
			Help: "HTTP requests sent to the Unpod API, by endpoint and status code (\"error\" for transport failures).",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callstream_unpod_request_duration_seconds",
			Help:    "Time of one HTTP request to the Unpod API, body included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"endpoint"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_unpod_retries_total",
			Help: "Retries of Unpod API requests, by endpoint and reason.",
		}, []string{"endpoint", "reason"}),
	}
	if reg == nil {
		return m, nil
	}
	// Several clients (one per token) may share a registry: reuse the
	// series the first one registered.
	var err error
	if m.requests, err = telemetry.RegisterOrReuse(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = telemetry.RegisterOrReuse(reg, m.duration); err != nil {
		return nil, err
	}
	if m.retries, err = telemetry.RegisterOrReuse(reg, m.retries); err != nil {
		return nil, err
	}
	return m, nil
}
