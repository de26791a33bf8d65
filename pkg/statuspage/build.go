package statuspage

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"sort"
	"time"
)

// build assembles the snapshot of view v, sampled at now. p.mu is held.
func (p *Page) build(v view, now time.Time) *Snapshot {
	plugins := slices.Clone(p.deps.Plugins)
	if plugins == nil {
		plugins = []string{}
	}
	s := &Snapshot{
		Process: p.deps.Process, Producer: p.deps.Producer, Plugins: plugins,
		Seq: p.seq, SampledAtMS: now.UnixMilli(),
		IntervalSeconds: p.cfg.Interval.Seconds(), RateWindowSeconds: p.cfg.RateWindow.Seconds(),
		Stages: []Stage{}, Orgs: []Org{}, Webhooks: []Endpoint{}, ConsumerLag: []PluginLag{}, Freshness: []Freshness{},
		Missing: []string{},
	}
	runs := func(plugin string) bool { return slices.Contains(p.deps.Plugins, plugin) }
	var want []string
	if p.deps.Producer {
		want = append(want, mRead, mPublished, mLag, mCalls, mLastPoll)
		s.Stages = append(s.Stages,
			Stage{Stage: "read", Total: v.sum(mRead, nil), Rate: p.rate(keyRead)},
			Stage{Stage: "published", Total: v.sum(mPublished, nil), Rate: p.rate(keyPublished)})
		s.Orgs = orgs(v)
		s.Chart = p.chart.snapshot(now, p.cfg.ChartStep, p.cfg.ChartSpan)
	} else {
		s.Chart = Chart{StepSeconds: p.cfg.ChartStep.Seconds(), SpanSeconds: p.cfg.ChartSpan.Seconds(), EndMS: now.UnixMilli(),
			Statuses: []string{}, Orgs: []OrgChart{}}
	}
	if len(p.deps.Plugins) > 0 {
		want = append(want, mMessages)
	}
	handled := v.by(mMessages, "plugin", map[string]string{"outcome": "handled"})
	for _, plugin := range union(p.deps.Plugins, slices.Sorted(maps.Keys(handled))) {
		s.Stages = append(s.Stages, Stage{Stage: "handled", Plugin: plugin, Total: handled[plugin], Rate: p.rate(keyHandled + plugin)})
	}
	s.Alerts = alerts(v)
	if runs("webhooks") {
		s.Webhooks = p.endpoints(v)
	}
	s.DLQ = dlq(v)
	for _, plugin := range slices.Sorted(maps.Keys(v.by(mConsumerLag, "plugin", nil))) {
		s.ConsumerLag = append(s.ConsumerLag, PluginLag{Plugin: plugin, Lag: v.sum(mConsumerLag, map[string]string{"plugin": plugin})})
	}
	for _, pt := range v[mFreshness] {
		if pt.buckets == nil {
			continue
		}
		key := labelKey(pt.labels)
		bs := deltaBuckets(pt.buckets, p.freshnessBase(key, now))
		s.Freshness = append(s.Freshness, Freshness{Labels: pt.labels, P50: finite(quantile(0.5, bs)),
			P99: finite(quantile(0.99, bs)), Count: bs[len(bs)-1].count})
	}
	sort.Slice(s.Freshness, func(i, j int) bool { return labelKey(s.Freshness[i].Labels) < labelKey(s.Freshness[j].Labels) })
	for _, m := range want {
		if !v.has(m) {
			s.Missing = append(s.Missing, m)
		}
	}
	return s
}

// union returns a's elements, then b's not in a.
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func orgs(v view) []Org {
	// One pass splits the series by org: matching every org against every
	// series was quadratic, and at 2,000 orgs took two thirds of an
	// otherwise idle producer's CPU, sampled every Interval.
	byOrg := map[string]view{}
	for _, m := range []string{mRead, mLag, mPaused, mPauseReason, mCalls, mLastPoll} {
		for _, pt := range v[m] {
			if o := pt.labels["org"]; o != "" {
				if byOrg[o] == nil {
					byOrg[o] = view{}
				}
				byOrg[o][m] = append(byOrg[o][m], pt)
			}
		}
	}
	out := []Org{}
	for _, name := range slices.Sorted(maps.Keys(byOrg)) {
		ov := byOrg[name]
		o := Org{Org: name, Calls: ov.by(mCalls, "status", nil)}
		for _, pt := range ov[mLag] {
			o.WindowLagSeconds = finite(pt.value)
		}
		o.Paused = ov.sum(mPaused, nil) > 0
		for _, pt := range ov[mPauseReason] {
			if pt.value > 0 {
				o.PauseReason = pt.labels["reason"]
			}
		}
		var at float64
		for _, pt := range ov[mLastPoll] {
			if pt.value > at {
				at, o.LastPollOutcome = pt.value, pt.labels["outcome"]
			}
		}
		if at > 0 {
			o.LastPollAtMS = int64(math.Round(at * 1000))
		}
		out = append(out, o)
	}
	return out
}

func alerts(v view) Alerts {
	a := Alerts{
		FiringByRule:  v.by(mAlerts, "rule", map[string]string{"state": "firing"}),
		PendingByRule: v.by(mAlerts, "rule", map[string]string{"state": "pending"}),
		Firing:        []Alert{}, Resolved: []Alert{},
		Detailed: v.has(mAlertValue),
	}
	byID := func(name string) map[string]float64 { return v.by(name, "alert_id", nil) }
	thresholds, starts, ends := byID(mAlertThresh), byID(mAlertStarts), byID(mAlertEnds)
	ms := func(m map[string]float64, id string) int64 {
		if s, ok := m[id]; ok && s > 0 {
			return int64(math.Round(s * 1000))
		}
		return 0
	}
	for _, pt := range v[mAlertValue] {
		id := pt.labels["alert_id"]
		al := Alert{ID: id, Rule: pt.labels["rule"], Org: pt.labels["org"], Group: pt.labels["group"],
			State: pt.labels["state"], Value: pt.value, StartsAtMS: ms(starts, id), EndsAtMS: ms(ends, id)}
		if t, ok := thresholds[id]; ok {
			al.Threshold = finite(t)
		}
		if math.IsNaN(al.Value) || math.IsInf(al.Value, 0) {
			al.Value = 0
		}
		if al.State == "resolved" {
			a.Resolved = append(a.Resolved, al)
		} else {
			a.Firing = append(a.Firing, al)
		}
	}
	newest := func(at func(Alert) int64) func(x, y Alert) int {
		return func(x, y Alert) int { return cmp.Or(cmp.Compare(at(y), at(x)), cmp.Compare(x.ID, y.ID)) }
	}
	slices.SortFunc(a.Firing, newest(func(x Alert) int64 { return x.StartsAtMS }))
	slices.SortFunc(a.Resolved, newest(func(x Alert) int64 { return x.EndsAtMS }))
	return a
}

func (p *Page) endpoints(v view) []Endpoint {
	names := map[string]bool{}
	for _, m := range []string{mWebhookQueue, mWebhookOpen, mWebhookOff, mWebhookOut} {
		for _, pt := range v[m] {
			if e := pt.labels["endpoint"]; e != "" {
				names[e] = true
			}
		}
	}
	out := []Endpoint{}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		ep := map[string]string{"endpoint": name}
		e := Endpoint{Endpoint: name, State: "healthy", Queued: v.sum(mWebhookQueue, ep),
			Delivered: v.sum(mWebhookOut, map[string]string{"endpoint": name, "outcome": "delivered"}),
			DLQ:       v.sum(mWebhookOut, map[string]string{"endpoint": name, "outcome": "dlq"}),
			Rate:      p.rate(keyWebhook + name)}
		switch {
		case v.sum(mWebhookOff, ep) > 0:
			e.State = "disabled"
		case v.sum(mWebhookOpen, ep) > 0:
			e.State = "breaker_open"
		}
		out = append(out, e)
	}
	return out
}

// dlq adds up what went to the DLQ: messages the runtime poisoned, webhook
// deliveries given up (the webhooks plug-in dead-letters those itself,
// after acknowledging the message) and records the producer could not
// publish.
func dlq(v view) DLQ {
	d := DLQ{Parts: []DLQPart{}}
	add := func(source string, n float64) {
		d.Total += n
		if n > 0 {
			d.Parts = append(d.Parts, DLQPart{Source: source, Count: n})
		}
	}
	poisoned := v.by(mMessages, "plugin", map[string]string{"outcome": "poisoned"})
	for _, plugin := range slices.Sorted(maps.Keys(poisoned)) {
		add("plugin "+plugin, poisoned[plugin])
	}
	given := v.by(mWebhookOut, "endpoint", map[string]string{"outcome": "dlq"})
	for _, ep := range slices.Sorted(maps.Keys(given)) {
		add("webhook "+ep, given[ep])
	}
	add("producer", v.sum(mProducerDLQ, nil))
	return d
}
