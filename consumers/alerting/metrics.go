package alerting

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the plug-in's Prometheus metrics.
type metrics struct {
	events        *prometheus.CounterVec // by outcome: counted, late, duplicate
	transitions   *prometheus.CounterVec // by rule and kind
	notifications *prometheus.CounterVec // by notifier and result
	queueDepth    *prometheus.GaugeVec
	watermark     prometheus.Gauge
	active        *prometheus.GaugeVec // pending and firing alerts by rule and state
	stateSaves    *prometheus.CounterVec
	alerts        *alertCollector // each firing and recently resolved alert

	// The events counters, resolved once: Handle is the hot path.
	counted, late, duplicate, future prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_alerting_events_total",
			Help: "Call events seen by alerting, by outcome (counted; late: beyond the grace period; duplicate: a revision already counted; future: created implausibly far ahead of the clock).",
		}, []string{"outcome"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_alerting_notices_total",
			Help: "Alert notices produced, by rule and kind (firing, reminder, resolved).",
		}, []string{"rule", "kind"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_alerting_notifications_total",
			Help: "Notifier deliveries, by notifier and result (sent, retried, failed, dropped).",
		}, []string{"notifier", "result"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callstream_alerting_notifier_queue_length",
			Help: "Notices waiting for each notifier.",
		}, []string{"notifier"}),
		watermark: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callstream_alerting_watermark_seconds",
			Help: "Event time up to which rules have been evaluated, as a Unix time.",
		}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callstream_alerting_alerts",
			Help: "Pending and firing alerts, by rule and state.",
		}, []string{"rule", "state"}),
		stateSaves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_alerting_state_saves_total",
			Help: "Saves of the alert state, by result (ok, error).",
		}, []string{"result"}),
		alerts: newAlertCollector(),
	}
	m.counted = m.events.WithLabelValues("counted")
	m.late = m.events.WithLabelValues("late")
	m.duplicate = m.events.WithLabelValues("duplicate")
	m.future = m.events.WithLabelValues("future")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.transitions, m.notifications, m.queueDepth, m.watermark, m.active, m.stateSaves, m.alerts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("alerting: register metrics: %w", err)
		}
	}
	return m, nil
}
