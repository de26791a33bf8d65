package consumers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/telemetry"
)

// Outcomes of one message, the values of the outcome label.
const (
	outcomeHandled  = "handled"  // the plug-in accepted it
	outcomePoisoned = "poisoned" // it went to the DLQ and was acknowledged
	outcomeFailed   = "failed"   // nacked: it will be delivered again
)

// metrics are the runtime's per-plug-in series. They share one set of
// collectors per Registerer, labelled by plug-in.
type metrics struct {
	messages   *prometheus.CounterVec   // plugin, outcome
	attempts   *prometheus.CounterVec   // plugin: failed attempts, retries included
	processing *prometheus.HistogramVec // plugin
	batchSize  *prometheus.HistogramVec // plugin
	lag        *prometheus.GaugeVec     // plugin
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_consumer_messages_total",
			Help: "Messages finished by a consumer plug-in, by outcome: handled, poisoned (sent to the DLQ) or failed (nacked for redelivery).",
		}, []string{"plugin", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_consumer_failed_attempts_total",
			Help: "Handler attempts that returned an error or panicked, retries included.",
		}, []string{"plugin"}),
		processing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callstream_consumer_processing_seconds",
			Help:    "Time from delivery of a message to its acknowledgement, retries and batching included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"plugin"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callstream_consumer_batch_size",
			Help:    "Events per batch handed to a batch plug-in.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}, []string{"plugin"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callstream_consumer_lag",
			Help: "Events on the calls topic not yet committed by the plug-in's consumer group, as last sampled.",
		}, []string{"plugin"}),
	}
	if reg == nil {
		return m
	}
	m.messages, _ = telemetry.RegisterOrReuse(reg, m.messages)
	m.attempts, _ = telemetry.RegisterOrReuse(reg, m.attempts)
	m.processing, _ = telemetry.RegisterOrReuse(reg, m.processing)
	m.batchSize, _ = telemetry.RegisterOrReuse(reg, m.batchSize)
	m.lag, _ = telemetry.RegisterOrReuse(reg, m.lag)
	return m
}
