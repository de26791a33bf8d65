package producer

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the producer's Prometheus series. HTTP requests by status are
// counted by pkg/unpod's client on the same registry.
type metrics struct {
	recordsRead   *prometheus.CounterVec // org
	invalid       *prometheus.CounterVec // org
	deadLettered  *prometheus.CounterVec // org, reason
	published     *prometheus.CounterVec // org, type
	duplicates    *prometheus.CounterVec // org
	windows       *prometheus.CounterVec // org, result
	orgErrors     *prometheus.CounterVec // org, kind
	lag           *prometheus.GaugeVec   // org
	paused        *prometheus.GaugeVec   // org
	remembered    prometheus.Gauge
	stateSaves    *prometheus.CounterVec // result
	restoredCalls prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		recordsRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_producer_records_read_total", Help: "Call log records read from the API, repeats included.",
		}, []string{"org"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_producer_invalid_records_total", Help: "Records the API sent that could not be decoded, at every read (each is dead-lettered once).",
		}, []string{"org"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_producer_dead_lettered_total",
			Help: "Records put on the DLQ instead of being published, once each, by reason: unknown_status, undecodable, outside_window, too_large; with _by_reference when the DLQ record holds only the first bytes, size and sha256 of the raw record.",
		}, []string{"org", "reason"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_producer_events_published_total", Help: "Events acknowledged by the bus, by ce_type.",
		}, []string{"org", "type"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_producer_duplicates_dropped_total", Help: "Records dropped because the same content was already published.",
		}, []string{"org"}),
		windows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_producer_window_reads_total", Help: "Window reads by result: complete, reread (count changed while paging) or inconsistent (accepted after max_window_reads).",
		}, []string{"org", "result"}),
		orgErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_producer_org_errors_total", Help: "Failed polls of an organization, by kind: permanent (a refused redirect, 400/401/403/404), rate_limited (Retry-After), transient or publish.",
		}, []string{"org", "kind"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callstream_producer_window_lag_seconds", Help: "Age of the newest creation time read at rung 0: now minus the rung 0 frontier.",
		}, []string{"org"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callstream_producer_org_paused", Help: "1 while an organization is paused after a failed poll.",
		}, []string{"org"}),
		remembered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callstream_producer_remembered_calls", Help: "Calls in the dedup memory.",
		}),
		stateSaves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_producer_state_saves_total", Help: "Checkpoint saves by result.",
		}, []string{"result"}),
		restoredCalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callstream_producer_restored_events_total", Help: "Events read back from the events topic to rebuild the dedup memory.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.recordsRead, m.invalid, m.deadLettered, m.published, m.duplicates, m.windows,
		m.orgErrors, m.lag, m.paused, m.remembered, m.stateSaves, m.restoredCalls} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("producer: metrics already registered on this registry: use one registry per producer")
			}
			return nil, err
		}
	}
	return m, nil
}
