package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FreshnessName is the end-to-end freshness histogram: seconds from a
// call's creation_time in the API to a stage of the pipeline.
const FreshnessName = "callstream_event_freshness_seconds"

// Stages of the freshness histogram's stage label.
const (
	StagePublished = "published" // the bus acknowledged the event (producer; plugin "")
	StageHandled   = "handled"   // a consumer plug-in handled it (plugin names it)
)

// FreshnessBuckets span a fresh call (a few seconds) to one the rescan
// ladder caught hours late.
var FreshnessBuckets = []float64{1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200}

// NewFreshness returns the freshness histogram, labelled by stage, plugin
// and type (callstream.call.created.v1 or .updated.v1). The producer and
// the consumers runtime each register it with RegisterOrReuse, so in one
// process (callstream run) they share it. Its creation_time start means a
// late record counts from when the call was created, not from when the
// API first showed it: the type="callstream.call.created.v1" series of a
// quiet stream is the freshness of calls the API shows at once, and an
// updated event counts the time since the call began.
func NewFreshness() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    FreshnessName,
		Help:    "Seconds from a call's creation_time to a stage: published (acknowledged by the bus, producer) or handled (by the consumer plug-in named in plugin), by event type.",
		Buckets: FreshnessBuckets,
	}, []string{"stage", "plugin", "type"})
}

// Freshness returns the seconds from created to at, at least 0: a clock
// behind the API's must not make a call look fresher than instant.
func Freshness(created, at time.Time) float64 {
	return max(0, at.Sub(created).Seconds())
}
