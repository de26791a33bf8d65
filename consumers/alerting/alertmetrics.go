package alerting

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/schemas"
)

// alertView is one alert as the per-alert metrics show it.
type alertView struct {
	id, rule, org, group string
	value, threshold     float64
	startsAt, endsAt     float64 // Unix seconds; endsAt 0 while firing
}

// resolvedAlert is a resolved alert kept in the metrics until expires
// (wall time).
type resolvedAlert struct {
	view    alertView
	expires time.Time
}

// groupString renders group labels as "k=v,k=v", sorted by key.
func groupString(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ",")
}

// viewOf describes an alert event (a resolution) for the metrics.
func viewOf(a *schemas.AlertEvent) alertView {
	v := alertView{id: a.AlertID, rule: a.Rule, org: a.Org, group: groupString(a.Group), value: a.Value,
		threshold: a.Threshold, startsAt: unixSeconds(a.StartsAt)}
	if a.EndsAt != nil {
		v.endsAt = unixSeconds(*a.EndsAt)
	}
	return v
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// firingAlerts describes every firing alert with its latest value.
func (e *engine) firingAlerts() []alertView {
	var out []alertView
	for _, r := range e.rules {
		for _, g := range r.groups {
			a := &g.alert
			if a.state != stateFiring {
				continue
			}
			out = append(out, alertView{id: a.alertID, rule: r.rule.Name, org: g.labels[LabelOrg], group: groupString(g.labels),
				value: a.value, threshold: a.threshold, startsAt: float64(a.activeAt) / 1e9})
		}
	}
	slices.SortFunc(out, func(a, b alertView) int { return strings.Compare(a.id, b.id) })
	return out
}

// alertCollector exports each firing alert, and each resolved one for an
// hour, for the status page: callstream_alerting_alert_value (labelled
// with the alert), _threshold, _starts_at_seconds and, once resolved,
// _ends_at_seconds (labelled by alert_id). The plug-in replaces the
// snapshot on every tick; a collector rather than gauge vectors, so an
// alert that changes state or expires leaves no stale series behind.
type alertCollector struct {
	value, threshold, startsAt, endsAt *prometheus.Desc

	mu       sync.Mutex
	firing   []alertView
	resolved []alertView
}

func newAlertCollector() *alertCollector {
	id := []string{"alert_id"}
	return &alertCollector{
		value: prometheus.NewDesc("callstream_alerting_alert_value",
			"The current value of each firing alert (its value at resolution for a resolved one, kept for an hour), by alert, rule, org, group (k=v,k=v) and state (firing, resolved).",
			[]string{"alert_id", "rule", "org", "group", "state"}, nil),
		threshold: prometheus.NewDesc("callstream_alerting_alert_threshold",
			"The threshold each alert's value is compared with.", id, nil),
		startsAt: prometheus.NewDesc("callstream_alerting_alert_starts_at_seconds",
			"When each alert went pending (its starts_at), as a Unix time.", id, nil),
		endsAt: prometheus.NewDesc("callstream_alerting_alert_ends_at_seconds",
			"When each resolved alert resolved (its ends_at), as a Unix time.", id, nil),
	}
}

func (c *alertCollector) set(firing []alertView, resolved []resolvedAlert) {
	rs := make([]alertView, len(resolved))
	for i := range resolved {
		rs[i] = resolved[i].view
	}
	c.mu.Lock()
	c.firing, c.resolved = firing, rs
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *alertCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.value
	ch <- c.threshold
	ch <- c.startsAt
	ch <- c.endsAt
}

// Collect implements prometheus.Collector.
func (c *alertCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		// Label values come from events (org, numbers): one that is not
		// valid UTF-8 drops its series rather than the whole scrape.
		if m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...); err == nil {
			ch <- m
		}
	}
	emit := func(v alertView, state string) {
		gauge(c.value, v.value, v.id, v.rule, v.org, v.group, state)
		gauge(c.threshold, v.threshold, v.id)
		gauge(c.startsAt, v.startsAt, v.id)
		if state == schemas.AlertResolved {
			gauge(c.endsAt, v.endsAt, v.id)
		}
	}
	for _, v := range c.firing {
		emit(v, schemas.AlertFiring)
	}
	for _, v := range c.resolved {
		emit(v, schemas.AlertResolved)
	}
}
