package consumers

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/telemetry"
	"github.com/callstream/callstream/schemas"
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
	messages      *prometheus.CounterVec   // plugin, outcome
	attempts      *prometheus.CounterVec   // plugin: failed attempts, retries included
	processing    *prometheus.HistogramVec // plugin
	batchSize     *prometheus.HistogramVec // plugin
	lag           *prometheus.GaugeVec     // plugin
	paused        *prometheus.GaugeVec     // plugin
	undeliverable *prometheus.CounterVec   // plugin
	freshness     *prometheus.HistogramVec // stage, plugin, type: shared with the producer (pkg/telemetry)
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_consumer_messages_total",
			Help: "Messages finished by a consumer plug-in, by outcome: handled, poisoned (sent to the DLQ) or failed (nacked for redelivery).",
		}, []string{"plugin", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_consumer_failed_attempts_total",
			Help: "Batch attempts of a plug-in that failed (an error or a panic) and were retried.",
		}, []string{"plugin"}),
		processing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callstream_consumer_processing_seconds",
			Help:    "Time from the delivery of a batch to its acknowledgement, retries included, once per message.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"plugin"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callstream_consumer_batch_size",
			Help:    "Messages per batch taken from the bus for a plug-in.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}, []string{"plugin"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callstream_consumer_lag",
			Help: "Events on the calls topic not yet committed by the plug-in's consumer group, as last sampled.",
		}, []string{"plugin"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callstream_consumer_paused",
			Help: "1 while a plug-in waits out a failing dependency (retrying, dead-lettering nothing).",
		}, []string{"plugin"}),
		undeliverable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_consumer_undeliverable_total",
			Help: "Messages that could be neither handled nor dead-lettered (too large for the DLQ): recorded in the plug-in's state and skipped.",
		}, []string{"plugin"}),
		freshness: telemetry.NewFreshness(),
	}
	r := telemetry.NewRegistrar(reg)
	telemetry.Reuse(r, &m.freshness)
	telemetry.Reuse(r, &m.messages)
	telemetry.Reuse(r, &m.attempts)
	telemetry.Reuse(r, &m.processing)
	telemetry.Reuse(r, &m.batchSize)
	telemetry.Reuse(r, &m.lag)
	telemetry.Reuse(r, &m.paused)
	telemetry.Reuse(r, &m.undeliverable)
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("consumers: register metrics: %w", err)
	}
	return m, nil
}

// laneMetrics are one plug-in's series, resolved once.
type laneMetrics struct {
	handled, poisoned, failed prometheus.Counter
	attempts, undeliverable   prometheus.Counter
	processing, batchSize     prometheus.Observer
	paused                    prometheus.Gauge
	freshCreated, freshUpdate prometheus.Observer // creation_time to handled
}

func (m *metrics) lane(plugin string) laneMetrics {
	lm := laneMetrics{
		handled:       m.messages.WithLabelValues(plugin, outcomeHandled),
		poisoned:      m.messages.WithLabelValues(plugin, outcomePoisoned),
		failed:        m.messages.WithLabelValues(plugin, outcomeFailed),
		attempts:      m.attempts.WithLabelValues(plugin),
		undeliverable: m.undeliverable.WithLabelValues(plugin),
		processing:    m.processing.WithLabelValues(plugin),
		batchSize:     m.batchSize.WithLabelValues(plugin),
		paused:        m.paused.WithLabelValues(plugin),
		freshCreated:  m.freshness.WithLabelValues(telemetry.StageHandled, plugin, schemas.TypeCallCreated),
		freshUpdate:   m.freshness.WithLabelValues(telemetry.StageHandled, plugin, schemas.TypeCallUpdated),
	}
	lm.paused.Set(0)
	return lm
}

// count records the outcomes of one batch that took d.
func (lm laneMetrics) count(handled, poisoned, failed int, d time.Duration) {
	lm.handled.Add(float64(handled))
	lm.poisoned.Add(float64(poisoned))
	lm.failed.Add(float64(failed))
	s := d.Seconds()
	for range handled + poisoned + failed {
		lm.processing.Observe(s)
	}
}

// fresh observes, for each delivery handled at now, the seconds since its
// call's creation_time.
func (lm laneMetrics) fresh(now time.Time, ds []Delivery, out []outcome) {
	for i := range ds {
		if out[i].kind != handled {
			continue
		}
		o := lm.freshCreated
		if ds[i].Event.Revision > 1 {
			o = lm.freshUpdate
		}
		o.Observe(telemetry.Freshness(ds[i].Event.CreationTime, now))
	}
}
