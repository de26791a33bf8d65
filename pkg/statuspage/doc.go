// Package statuspage is the operator's face of a callstream process: a live
// status page served at / on the process's operational listener (package
// telemetry), next to /metrics.
//
// Everything it shows comes from the process's Prometheus registry (a
// prometheus.Gatherer), so the page and /metrics never disagree: totals and
// gauges are the registry's values at the moment of the sample, and rates
// are computed by the page from counters sampled every Config.Interval into
// a ring buffer (a counter's increase over Config.RateWindow divided by the
// time between the two samples). Calls by status per org over the last hour
// are the increase of callstream_producer_calls_total per Config.ChartStep,
// by the time they were published (a catch-up after a start shows as a
// spike in its first minute). Event freshness p50/p99 is interpolated from
// the callstream_event_freshness_seconds histogram's buckets, like
// Prometheus's histogram_quantile, over Config.FreshnessWindow.
//
// Each process shows the parts it runs (Deps.Producer, Deps.Plugins): the
// producer's stages and orgs, the consumers' plug-ins, alerts when alerting
// runs, endpoints when webhooks runs. Sections whose metrics are not there
// yet say so instead of showing zeros.
//
// Routes (Register mounts them): / is the page (HTML, CSS and JavaScript
// embedded in the binary, no external resources, 16 KB, 6 KB gzipped); /status.json
// is the current Snapshot; /status/events streams a Snapshot after every
// sample as server-sent events ("snapshot" events, one JSON object each),
// which the page listens to, so it updates without reloading. Alerts have
// the anchor #alert-<alert_id>, the Alertmanager generatorURL of the alert.
//
// Metrics it reads beyond the ones every package defines: from the
// producer callstream_producer_org_pause_reason{org,reason},
// callstream_producer_calls_total{org,status} and
// callstream_producer_last_poll_timestamp_seconds{org,outcome}; from
// alerting callstream_alerting_alert_value{alert_id,rule,org,group,state},
// callstream_alerting_alert_threshold, _starts_at_seconds and
// _ends_at_seconds (by alert_id); callstream_event_freshness_seconds (any
// labels); callstream_producer_dead_lettered_total (any labels) for records
// the producer sent to the DLQ. Each is optional: its section waits for it.
package statuspage
