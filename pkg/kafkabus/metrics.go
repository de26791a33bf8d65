package kafkabus

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/telemetry"
)

// metrics are the counters of one Publisher or Subscriber. With a nil
// Registerer they still count, they are just not exported.
type metrics struct {
	published *prometheus.CounterVec // topic
	consumed  *prometheus.CounterVec // topic
	committed *prometheus.CounterVec // topic
	nacked    *prometheus.CounterVec // topic
	errors    *prometheus.CounterVec // op
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafkabus_published_messages_total",
			Help: "Messages the broker acknowledged, by topic.",
		}, []string{"topic"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafkabus_consumed_messages_total",
			Help: "Messages fetched and delivered to a subscriber, by topic (redeliveries not counted).",
		}, []string{"topic"}),
		committed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafkabus_committed_messages_total",
			Help: "Messages whose offset was handed to the consumer group for commit, by topic.",
		}, []string{"topic"}),
		nacked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafkabus_nacked_messages_total",
			Help: "Messages nacked by a handler and scheduled for redelivery, by topic.",
		}, []string{"topic"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kafkabus_errors_total",
			Help: "Errors talking to Kafka, by operation (publish, publish_retry: a write the broker refused, retried; fetch, commit, unmarshal, close).",
		}, []string{"op"}),
	}
	if reg == nil {
		return m
	}
	m.published, _ = telemetry.RegisterOrReuse(reg, m.published)
	m.consumed, _ = telemetry.RegisterOrReuse(reg, m.consumed)
	m.committed, _ = telemetry.RegisterOrReuse(reg, m.committed)
	m.nacked, _ = telemetry.RegisterOrReuse(reg, m.nacked)
	m.errors, _ = telemetry.RegisterOrReuse(reg, m.errors)
	return m
}
