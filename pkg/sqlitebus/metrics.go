package sqlitebus

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/telemetry"
)

// metrics are the counters of one Bus. With a nil Registerer they still
// count, they are just not exported.
type metrics struct {
	published    *prometheus.CounterVec // topic
	consumed     *prometheus.CounterVec // topic, group
	committed    *prometheus.CounterVec // topic, group
	nacked       *prometheus.CounterVec // topic, group
	deleted      *prometheus.CounterVec // topic
	errors       *prometheus.CounterVec // op
	writeSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlitebus_published_messages_total",
			Help: "Messages written to the bus file and committed to disk, by topic.",
		}, []string{"topic"}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlitebus_consumed_messages_total",
			Help: "Messages delivered to a subscriber for the first time, by topic and consumer group.",
		}, []string{"topic", "group"}),
		committed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlitebus_committed_messages_total",
			Help: "Messages whose offset a consumer group committed, by topic and consumer group.",
		}, []string{"topic", "group"}),
		nacked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlitebus_nacked_messages_total",
			Help: "Messages nacked by a handler and scheduled for redelivery, by topic and consumer group.",
		}, []string{"topic", "group"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlitebus_deleted_messages_total",
			Help: "Messages deleted by retention, by topic.",
		}, []string{"topic"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqlitebus_errors_total",
			Help: "Errors of the bus, by operation (publish, too_large, busy, fetch, commit, unmarshal, retention).",
		}, []string{"op"}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sqlitebus_write_transaction_seconds",
			Help:    "Duration of the bus's write transactions, fsync included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs [7]error
	m.published, errs[0] = telemetry.RegisterOrReuse(reg, m.published)
	m.consumed, errs[1] = telemetry.RegisterOrReuse(reg, m.consumed)
	m.committed, errs[2] = telemetry.RegisterOrReuse(reg, m.committed)
	m.nacked, errs[3] = telemetry.RegisterOrReuse(reg, m.nacked)
	m.deleted, errs[4] = telemetry.RegisterOrReuse(reg, m.deleted)
	m.errors, errs[5] = telemetry.RegisterOrReuse(reg, m.errors)
	m.writeSeconds, errs[6] = telemetry.RegisterOrReuse(reg, m.writeSeconds)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("sqlitebus: register metrics: %w", err)
	}
	return m, nil
}
