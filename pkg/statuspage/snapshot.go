package statuspage

// Snapshot is what /status.json serves and /status/events streams: the
// state of one process at one sample. Optional figures are null when the
// metric is absent or a rate cannot be computed yet.
type Snapshot struct {
	Process  string   `json:"process"`  // which command runs, e.g. "callstream run"
	Producer bool     `json:"producer"` // the process runs the producer
	Plugins  []string `json:"plugins"`  // the consumer plug-ins it runs
	Seq      uint64   `json:"seq"`      // sample number, from 1
	// SampledAtMS is when the registry was gathered, Unix milliseconds.
	SampledAtMS       int64   `json:"sampled_at_ms"`
	IntervalSeconds   float64 `json:"interval_seconds"`
	RateWindowSeconds float64 `json:"rate_window_seconds"`
	// GatherError is set when the registry could not be read whole.
	GatherError string `json:"gather_error,omitempty"`

	Stages      []Stage     `json:"stages"`
	Orgs        []Org       `json:"orgs"`
	Alerts      Alerts      `json:"alerts"`
	Chart       Chart       `json:"chart"`
	Webhooks    []Endpoint  `json:"webhooks"`
	DLQ         DLQ         `json:"dlq"`
	ConsumerLag []PluginLag `json:"consumer_lag"`
	Freshness   []Freshness `json:"freshness"`
	Missing     []string    `json:"missing"` // metrics the page reads that this process does not expose (yet)
}

// Stage is one stage of the pipeline: records read from the API, events
// published, or events handled by one plug-in.
type Stage struct {
	Stage  string   `json:"stage"`            // read, published or handled
	Plugin string   `json:"plugin,omitempty"` // for handled
	Total  float64  `json:"total"`
	Rate   *float64 `json:"rate"` // per second over the rate window
}

// Org is one organization as the producer sees it.
type Org struct {
	Org              string   `json:"org"`
	WindowLagSeconds *float64 `json:"window_lag_seconds"`
	Paused           bool     `json:"paused"`
	PauseReason      string   `json:"pause_reason,omitempty"`
	LastPollOutcome  string   `json:"last_poll_outcome,omitempty"` // ok or a pause reason
	LastPollAtMS     int64    `json:"last_poll_at_ms,omitempty"`
	// Calls are the events published so far by call status.
	Calls map[string]float64 `json:"calls"`
}

// Alerts are the alerting plug-in's alerts.
type Alerts struct {
	// FiringByRule and PendingByRule count active alerts by rule
	// (callstream_alerting_alerts).
	FiringByRule  map[string]float64 `json:"firing_by_rule"`
	PendingByRule map[string]float64 `json:"pending_by_rule"`
	Firing        []Alert            `json:"firing"`
	Resolved      []Alert            `json:"resolved"` // the last hour's, newest first
	// Detailed is true when the per-alert series
	// (callstream_alerting_alert_value and its companions) are there: an
	// alerting that exports them and had an alert in the last hour.
	Detailed bool `json:"detailed"`
}

// Alert is one alert with its value.
type Alert struct {
	ID         string   `json:"alert_id"`
	Rule       string   `json:"rule"`
	Org        string   `json:"org"`
	Group      string   `json:"group"`
	State      string   `json:"state"` // firing or resolved
	Value      float64  `json:"value"`
	Threshold  *float64 `json:"threshold"`
	StartsAtMS int64    `json:"starts_at_ms,omitempty"`
	EndsAtMS   int64    `json:"ends_at_ms,omitempty"`
}

// Chart is calls by status per org, in buckets of StepSeconds ending at
// EndMS, over the last SpanSeconds.
type Chart struct {
	StepSeconds float64    `json:"step_seconds"`
	SpanSeconds float64    `json:"span_seconds"`
	EndMS       int64      `json:"end_ms"`
	Statuses    []string   `json:"statuses"`
	Orgs        []OrgChart `json:"orgs"`
}

// OrgChart is one org's bars: Buckets[i][j] calls of Statuses[j] published
// in the bucket starting at StartsMS[i]; Totals are their sums.
type OrgChart struct {
	Org      string             `json:"org"`
	StartsMS []int64            `json:"starts_ms"`
	Buckets  [][]float64        `json:"buckets"`
	Totals   map[string]float64 `json:"totals"`
}

// Endpoint is one webhook endpoint.
type Endpoint struct {
	Endpoint  string   `json:"endpoint"`
	State     string   `json:"state"` // healthy, breaker_open or disabled
	Queued    float64  `json:"queued"`
	Delivered float64  `json:"delivered"`
	DLQ       float64  `json:"dlq"`
	Rate      *float64 `json:"rate"` // deliveries per second
}

// DLQ counts messages sent to the dead-letter topic by this process.
type DLQ struct {
	Total float64   `json:"total"`
	Parts []DLQPart `json:"parts"`
}

// DLQPart is what one sender dead-lettered.
type DLQPart struct {
	Source string  `json:"source"` // "plugin <name>", "webhook <endpoint>" or "producer"
	Count  float64 `json:"count"`
}

// PluginLag is a plug-in's consumer group lag on the calls topic.
type PluginLag struct {
	Plugin string  `json:"plugin"`
	Lag    float64 `json:"lag"`
}

// Freshness is one series of callstream_event_freshness_seconds.
type Freshness struct {
	Labels map[string]string `json:"labels"`
	P50    *float64          `json:"p50"`
	P99    *float64          `json:"p99"`
	Count  float64           `json:"count"` // observations in the window
}
