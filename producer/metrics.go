package producer

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/telemetry"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
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
	pauseReason   *prometheus.GaugeVec   // org, reason: 1 for the reason of the current pause
	calls         *prometheus.CounterVec // org, status: published events by call_status
	lastPoll      *prometheus.GaugeVec   // org, outcome: Unix time of the last poll with that outcome
	remembered    prometheus.Gauge
	stateSaves    *prometheus.CounterVec // result
	restoredCalls prometheus.Counter
	freshness     *prometheus.HistogramVec // stage, plugin, type: shared with the consumers (pkg/telemetry)
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
		pauseReason: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callstream_producer_org_pause_reason", Help: "1 for the reason an organization is paused (unauthorized, forbidden, not_found, bad_request, rate_limited, server_error, network, publish); absent while it polls normally.",
		}, []string{"org", "reason"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_producer_calls_total", Help: "Events acknowledged by the bus, by organization and normalised call_status (completed, missed, failed).",
		}, []string{"org", "status"}),
		lastPoll: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callstream_producer_last_poll_timestamp_seconds", Help: "Unix time at which the last poll of an organization with this outcome ended: ok, or the pause reason.",
		}, []string{"org", "outcome"}),
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
	m.freshness = telemetry.NewFreshness()
	if reg == nil {
		return m, nil
	}
	// The consumers runtime of the same process counts in the same
	// histogram.
	fr, err := telemetry.RegisterOrReuse(reg, m.freshness)
	if err != nil {
		return nil, fmt.Errorf("producer: register %s: %w", telemetry.FreshnessName, err)
	}
	m.freshness = fr
	for _, c := range []prometheus.Collector{m.recordsRead, m.invalid, m.deadLettered, m.published, m.duplicates, m.windows,
		m.orgErrors, m.lag, m.paused, m.pauseReason, m.calls, m.lastPoll, m.remembered, m.stateSaves, m.restoredCalls} {
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

// Values of the pause reason and last poll outcome labels.
const (
	pollOK             = "ok"
	reasonUnauthorized = "unauthorized" // 401: the token is wrong
	reasonForbidden    = "forbidden"    // 403: the token may not see the org
	reasonNotFound     = "not_found"    // 404: no such Org-Handle
	reasonBadRequest   = "bad_request"  // 400 and other refused requests
	reasonRateLimited  = "rate_limited" // 429 after the client's retries
	reasonServerError  = "server_error" // 5xx or a malformed body after retries
	reasonNetwork      = "network"      // no answer: connection, timeout
	reasonPublish      = "publish"      // the bus refused the events or the state
)

var pauseReasons = []string{reasonUnauthorized, reasonForbidden, reasonNotFound, reasonBadRequest,
	reasonRateLimited, reasonServerError, reasonNetwork, reasonPublish}

// pauseReason names the class of a failed poll, for the operator: what to
// fix (the token, the handle) or what to wait for (the API, the network).
func pauseReason(err error) string {
	var ae *unpod.APIError
	switch {
	case errors.Is(err, errPublish):
		return reasonPublish
	case errors.Is(err, unpod.ErrUnauthorized):
		return reasonUnauthorized
	case errors.Is(err, unpod.ErrForbidden):
		return reasonForbidden
	case errors.Is(err, unpod.ErrNotFound):
		return reasonNotFound
	case errors.Is(err, unpod.ErrBadRequest):
		return reasonBadRequest
	case errors.Is(err, unpod.ErrRateLimited):
		return reasonRateLimited
	case errors.Is(err, unpod.ErrServer), errors.Is(err, unpod.ErrMalformed):
		return reasonServerError
	case errors.As(err, &ae):
		// Another status (a 3xx, an undocumented 4xx): a client refused
		// by the server is a bad request, anything else the server's.
		if ae.Status >= http.StatusBadRequest && ae.Status < http.StatusInternalServerError {
			return reasonBadRequest
		}
		return reasonServerError
	}
	return reasonNetwork
}

// polled records how a poll of org ended: the outcome's timestamp, and the
// pause reason while it fails (only the current one is 1).
func (m *metrics) polled(org string, err error) {
	outcome := pollOK
	if err != nil {
		outcome = pauseReason(err)
		m.pauseReason.WithLabelValues(org, outcome).Set(1)
	}
	// The new reason is set before the old ones go, so a scrape in between
	// never sees a paused org without a reason.
	for _, r := range pauseReasons {
		if r != outcome {
			m.pauseReason.DeleteLabelValues(org, r)
		}
	}
	m.lastPoll.WithLabelValues(org, outcome).Set(float64(time.Now().UnixNano()) / 1e9)
}

// forget removes the gauges of an organization this producer no longer
// polls (revoked, or gone from the list): frozen at their last values they
// would keep an alert such as CallstreamOrgPaused firing, and the status
// page would show the org twice, once for each owner. Counters stay: sums
// across producers stay right.
func (m *metrics) forget(org string) {
	m.lag.DeleteLabelValues(org)
	m.paused.DeleteLabelValues(org)
	m.pauseReason.DeletePartialMatch(prometheus.Labels{"org": org})
	m.lastPoll.DeletePartialMatch(prometheus.Labels{"org": org})
}

// publishedCalls counts acknowledged events by call status.
func (m *metrics) publishedCalls(org string, events []outgoing) {
	var completed, missed, failed int
	for i := range events {
		switch events[i].event.CallStatus {
		case schemas.StatusCompleted:
			completed++
		case schemas.StatusMissed:
			missed++
		case schemas.StatusFailed:
			failed++
		}
	}
	m.calls.WithLabelValues(org, schemas.StatusCompleted).Add(float64(completed))
	m.calls.WithLabelValues(org, schemas.StatusMissed).Add(float64(missed))
	m.calls.WithLabelValues(org, schemas.StatusFailed).Add(float64(failed))
}

// fresh observes the freshness of events acknowledged at now: from each
// call's creation_time to the acknowledgement.
func (m *metrics) fresh(now time.Time, events []outgoing) {
	if len(events) == 0 {
		return
	}
	created := m.freshness.WithLabelValues(telemetry.StagePublished, "", schemas.TypeCallCreated)
	updated := m.freshness.WithLabelValues(telemetry.StagePublished, "", schemas.TypeCallUpdated)
	for i := range events {
		e := events[i].event
		o := created
		if e.Revision > 1 {
			o = updated
		}
		o.Observe(telemetry.Freshness(e.CreationTime, now))
	}
}
