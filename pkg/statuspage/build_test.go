package statuspage

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)

// TestSnapshotShowsTheRegistry sets every series the page reads to known
// values and checks the snapshot shows exactly those.
func TestSnapshotShowsTheRegistry(t *testing.T) {
	f := newFixture(t)
	clock := &fakeClock{now: t0}
	p := newPage(t, f, clock, Config{})

	f.read.WithLabelValues("acme").Add(120)
	f.read.WithLabelValues("globex").Add(30)
	f.published.WithLabelValues("acme", "callstream.call.created.v1").Add(100)
	f.published.WithLabelValues("acme", "callstream.call.updated.v1").Add(5)
	f.calls.WithLabelValues("acme", "completed").Add(90)
	f.calls.WithLabelValues("acme", "missed").Add(10)
	f.calls.WithLabelValues("acme", "failed").Add(5)
	f.lag.WithLabelValues("acme").Set(12.5)
	f.lag.WithLabelValues("globex").Set(3600)
	f.paused.WithLabelValues("acme").Set(0)
	f.paused.WithLabelValues("globex").Set(1)
	f.reason.WithLabelValues("globex", "unauthorized").Set(1)
	f.lastPoll.WithLabelValues("acme", "ok").Set(float64(t0.Unix()) - 2)
	f.lastPoll.WithLabelValues("globex", "ok").Set(float64(t0.Unix()) - 600)
	f.lastPoll.WithLabelValues("globex", "unauthorized").Set(float64(t0.Unix()) - 5)
	f.messages.WithLabelValues("storage", "handled").Add(100)
	f.messages.WithLabelValues("storage", "poisoned").Add(2)
	f.messages.WithLabelValues("alerting", "handled").Add(98)
	f.messages.WithLabelValues("alerting", "failed").Add(7) // retried: not the DLQ
	f.consumerLag.WithLabelValues("storage").Set(40)
	f.active.WithLabelValues("failed-call-burst", "firing").Set(1)
	f.active.WithLabelValues("missed-call-spike", "pending").Set(1)
	f.alertValue.WithLabelValues("a1", "failed-call-burst", "acme", "org=acme", "firing").Set(0.45)
	f.threshold.WithLabelValues("a1").Set(0.3)
	f.starts.WithLabelValues("a1").Set(float64(t0.Unix() - 60))
	f.alertValue.WithLabelValues("a0", "missed-call-spike", "acme", "org=acme", "resolved").Set(0.2)
	f.threshold.WithLabelValues("a0").Set(0.5)
	f.starts.WithLabelValues("a0").Set(float64(t0.Unix() - 900))
	f.ends.WithLabelValues("a0").Set(float64(t0.Unix() - 300))
	f.queued.WithLabelValues("billing").Set(3)
	f.queued.WithLabelValues("crm").Set(0)
	f.queued.WithLabelValues("old").Set(0)
	f.open.WithLabelValues("crm").Set(1)
	f.disabled.WithLabelValues("old").Set(1)
	f.open.WithLabelValues("old").Set(1) // disabled wins over an open breaker
	f.outcomes.WithLabelValues("billing", "delivered").Add(80)
	f.outcomes.WithLabelValues("old", "dlq").Add(4)
	f.producerDLQ.WithLabelValues("unknown_status").Add(1)

	s := p.Sample()
	want := []Stage{
		{Stage: "read", Total: 150}, {Stage: "published", Total: 105},
		{Stage: "handled", Plugin: "storage", Total: 100}, {Stage: "handled", Plugin: "alerting", Total: 98},
		{Stage: "handled", Plugin: "webhooks"}, {Stage: "handled", Plugin: "lake"},
	}
	if !reflect.DeepEqual(s.Stages, want) {
		t.Errorf("stages = %+v, want %+v (no rate after one sample)", s.Stages, want)
	}
	wantOrgs := []Org{
		{Org: "acme", WindowLagSeconds: ptr(12.5), LastPollOutcome: "ok", LastPollAtMS: (t0.Unix() - 2) * 1000,
			Calls: map[string]float64{"completed": 90, "missed": 10, "failed": 5}},
		{Org: "globex", WindowLagSeconds: ptr(3600), Paused: true, PauseReason: "unauthorized", LastPollOutcome: "unauthorized",
			LastPollAtMS: (t0.Unix() - 5) * 1000, Calls: map[string]float64{}},
	}
	if !reflect.DeepEqual(s.Orgs, wantOrgs) {
		t.Errorf("orgs = %+v\nwant %+v", s.Orgs, wantOrgs)
	}
	wantAlerts := Alerts{
		FiringByRule: map[string]float64{"failed-call-burst": 1}, PendingByRule: map[string]float64{"missed-call-spike": 1},
		Firing: []Alert{{ID: "a1", Rule: "failed-call-burst", Org: "acme", Group: "org=acme", State: "firing", Value: 0.45,
			Threshold: ptr(0.3), StartsAtMS: (t0.Unix() - 60) * 1000}},
		Resolved: []Alert{{ID: "a0", Rule: "missed-call-spike", Org: "acme", Group: "org=acme", State: "resolved", Value: 0.2,
			Threshold: ptr(0.5), StartsAtMS: (t0.Unix() - 900) * 1000, EndsAtMS: (t0.Unix() - 300) * 1000}},
		Detailed: true,
	}
	if !reflect.DeepEqual(s.Alerts, wantAlerts) {
		t.Errorf("alerts = %+v\nwant %+v", s.Alerts, wantAlerts)
	}
	wantEndpoints := []Endpoint{
		{Endpoint: "billing", State: "healthy", Queued: 3, Delivered: 80},
		{Endpoint: "crm", State: "breaker_open"},
		{Endpoint: "old", State: "disabled", DLQ: 4},
	}
	if !reflect.DeepEqual(s.Webhooks, wantEndpoints) {
		t.Errorf("webhooks = %+v\nwant %+v", s.Webhooks, wantEndpoints)
	}
	wantDLQ := DLQ{Total: 7, Parts: []DLQPart{{"plugin storage", 2}, {"webhook old", 4}, {"producer", 1}}}
	if !reflect.DeepEqual(s.DLQ, wantDLQ) {
		t.Errorf("dlq = %+v, want %+v", s.DLQ, wantDLQ)
	}
	if want := []PluginLag{{"storage", 40}}; !reflect.DeepEqual(s.ConsumerLag, want) {
		t.Errorf("consumer lag = %+v, want %+v", s.ConsumerLag, want)
	}
	if len(s.Missing) != 0 {
		t.Errorf("missing = %v with every series present", s.Missing)
	}
}

// TestSnapshotShowsOnlyThePartsItRuns: a consume process without the
// producer shows no producer stage or org, and says which metrics it lacks.
func TestSnapshotShowsOnlyThePartsItRuns(t *testing.T) {
	f := newFixture(t)
	f.read.WithLabelValues("acme").Add(1)
	p, err := New(Config{}, Deps{Gatherer: f.reg, Process: "callstream consume", Plugins: []string{"storage"}})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Sample()
	if len(s.Stages) != 1 || s.Stages[0].Plugin != "storage" || len(s.Orgs) != 0 || len(s.Chart.Orgs) != 0 || s.Webhooks == nil || len(s.Webhooks) != 0 {
		t.Errorf("consume-only snapshot: stages %+v, orgs %+v, chart %+v, webhooks %+v", s.Stages, s.Orgs, s.Chart.Orgs, s.Webhooks)
	}
	if want := []string{mMessages}; !reflect.DeepEqual(s.Missing, want) {
		t.Errorf("missing = %v, want %v (storage handled nothing yet)", s.Missing, want)
	}
	if s.Alerts.Detailed {
		t.Error("alert details claimed without the series")
	}
}

// TestRates: a rate is the increase over the rate window divided by the
// time between the samples, starting once two samples exist.
func TestRates(t *testing.T) {
	f := newFixture(t)
	clock := &fakeClock{now: t0}
	p := newPage(t, f, clock, Config{Interval: 2 * time.Second, RateWindow: 10 * time.Second})
	f.messages.WithLabelValues("storage", "handled").Add(1000) // before the first sample: not a rate
	if s := p.Sample(); s.Stages[2].Rate != nil {
		t.Fatalf("rate after one sample = %v, want none", *s.Stages[2].Rate)
	}
	// 10 records a second for 20 s, then 50 a second for 4 s.
	var s *Snapshot
	for i := 0; i < 10; i++ {
		clock.Add(2 * time.Second)
		f.read.WithLabelValues("acme").Add(20)
		f.messages.WithLabelValues("storage", "handled").Add(6)
		s = p.Sample()
	}
	if !eqPtr(s.Stages[0].Rate, ptr(10)) || !eqPtr(s.Stages[2].Rate, ptr(3)) {
		t.Fatalf("steady rates: read %v, storage %v; want 10 and 3", *s.Stages[0].Rate, *s.Stages[2].Rate)
	}
	for i := 0; i < 2; i++ {
		clock.Add(2 * time.Second)
		f.read.WithLabelValues("acme").Add(100)
		s = p.Sample()
	}
	// Window: the oldest sample at most 10 s back is 10 s back: 3 steps
	// of 20 and 2 of 100 over 10 s.
	if want := (3*20 + 2*100) / 10.0; !eqPtr(s.Stages[0].Rate, &want) {
		t.Fatalf("read rate after the step = %v, want %v", *s.Stages[0].Rate, want)
	}
	if s.Stages[1].Rate == nil || *s.Stages[1].Rate != 0 {
		t.Errorf("published rate = %v, want 0 (nothing published)", s.Stages[1].Rate)
	}
}

// TestChartBuckets: bars are the calls published in each minute, their sum
// over the span is the increase of the counter over it, and minutes older
// than the span drop out.
func TestChartBuckets(t *testing.T) {
	f := newFixture(t)
	clock := &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	p := newPage(t, f, clock, Config{Interval: 20 * time.Second, ChartStep: time.Minute, ChartSpan: 3 * time.Minute})
	add := func(completed, failed float64) {
		f.calls.WithLabelValues("acme", "completed").Add(completed)
		f.calls.WithLabelValues("acme", "failed").Add(failed)
	}
	add(50, 0) // the catch-up at start: in the first minute
	p.Sample()
	for minute := 1; minute <= 4; minute++ {
		for i := 0; i < 3; i++ { // three samples a minute
			clock.Add(20 * time.Second)
			add(float64(minute), float64(i))
			p.Sample()
		}
	}
	// Samples at 12:00:00 .. 12:04:00: the 12:04 bucket has the last one.
	s := p.Sample()
	c := s.Chart
	if !reflect.DeepEqual(c.Statuses, []string{"completed", "failed"}) || len(c.Orgs) != 1 {
		t.Fatalf("chart statuses %v, orgs %+v", c.Statuses, c.Orgs)
	}
	o := c.Orgs[0]
	// Buckets 12:02, 12:03, 12:04 remain: 12:00 and 12:01 started at or
	// before 12:04:00 minus the span and were dropped. A bucket's bar is
	// what its samples saw added since the previous bucket's last sample:
	// 12:02 holds the samples at 12:02:00 (minute 2, i=2), :20 and :40
	// (minute 3, i=0 and 1).
	want := [][]float64{
		{2 + 3 + 3, 2 + 0 + 1},
		{3 + 4 + 4, 2 + 0 + 1},
		{4 + 0, 2 + 0}, // 12:04:00 (minute 4, i=2) and the extra sample
	}
	if !reflect.DeepEqual(o.Buckets, want) {
		t.Errorf("buckets = %v, want %v", o.Buckets, want)
	}
	var sumC, sumF float64
	for _, b := range want {
		sumC += b[0]
		sumF += b[1]
	}
	if o.Totals["completed"] != sumC || o.Totals["failed"] != sumF {
		t.Errorf("totals = %v, want completed %v failed %v", o.Totals, sumC, sumF)
	}
	wantStarts := []int64{}
	for m := 2; m <= 4; m++ {
		wantStarts = append(wantStarts, time.Date(2026, 3, 1, 12, m, 0, 0, time.UTC).UnixMilli())
	}
	if !reflect.DeepEqual(o.StartsMS, wantStarts) {
		t.Errorf("bucket starts = %v, want %v", o.StartsMS, wantStarts)
	}
}

// TestChartTotalsMatchCounterWithinSpan: while the process is younger than
// the span, the chart's totals are the counter's value.
func TestChartTotalsMatchCounterWithinSpan(t *testing.T) {
	f := newFixture(t)
	clock := &fakeClock{now: t0}
	p := newPage(t, f, clock, Config{Interval: 7 * time.Second})
	total := 0.0
	for i := 0; i < 40; i++ {
		n := float64(i % 5)
		f.calls.WithLabelValues("acme", "missed").Add(n)
		total += n
		clock.Add(7 * time.Second)
		p.Sample()
	}
	if got := p.Sample().Chart.Orgs[0].Totals["missed"]; got != total {
		t.Errorf("chart total %v, counter %v", got, total)
	}
}

func TestQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name string
		q    float64
		bs   []bucket
		want float64
	}{
		{"empty", 0.5, []bucket{{1, 0}, {inf, 0}}, math.NaN()},
		{"first bucket from zero", 0.5, []bucket{{2, 10}, {inf, 10}}, 1},
		{"interpolated", 0.5, []bucket{{1, 2}, {2, 6}, {5, 10}, {inf, 10}}, 1.75},
		{"p99 in the last finite bucket", 0.99, []bucket{{1, 2}, {2, 6}, {5, 10}, {inf, 10}}, 2 + 3*(9.9-6)/4},
		{"rank in +Inf: highest finite bound", 0.99, []bucket{{1, 5}, {2, 6}, {inf, 10}}, 2},
		{"exact bound", 0.5, []bucket{{1, 5}, {2, 10}, {inf, 10}}, 1},
	}
	for _, tt := range tests {
		got := quantile(tt.q, tt.bs)
		if !(math.IsNaN(got) && math.IsNaN(tt.want)) && math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: quantile(%v) = %v, want %v", tt.name, tt.q, got, tt.want)
		}
	}
}

// TestFreshnessWindow: quantiles cover the observations of the last
// FreshnessWindow only, once the process is older than it.
func TestFreshnessWindow(t *testing.T) {
	f := newFixture(t)
	clock := &fakeClock{now: t0}
	p := newPage(t, f, clock, Config{Interval: 10 * time.Second, FreshnessWindow: time.Minute})
	h := f.freshness.WithLabelValues("published")
	for i := 0; i < 100; i++ {
		h.Observe(8) // slow at first
	}
	s := p.Sample()
	if len(s.Freshness) != 1 || s.Freshness[0].Count != 100 || !eqPtr(s.Freshness[0].P50, ptr(5+5*0.5)) {
		t.Fatalf("young process: %+v, want 100 observations with p50 7.5 (all since start)", s.Freshness)
	}
	for i := 0; i < 9; i++ { // 90 s: the slow ones leave the window
		clock.Add(10 * time.Second)
		for j := 0; j < 10; j++ {
			h.Observe(0.5)
		}
		s = p.Sample()
	}
	fr := s.Freshness[0]
	if fr.Count != 60 || !eqPtr(fr.P50, ptr(0.5)) || !eqPtr(fr.P99, ptr(0.99)) {
		t.Errorf("after the window: count %v p50 %v p99 %v; want 60 observations, p50 0.5, p99 0.99 (all in the first bucket)",
			fr.Count, *fr.P50, *fr.P99)
	}
	if !reflect.DeepEqual(fr.Labels, map[string]string{"stage": "published"}) {
		t.Errorf("labels %v", fr.Labels)
	}
}

func TestRing(t *testing.T) {
	r := newRing[int](3)
	for i := 1; i <= 5; i++ {
		r.push(i)
	}
	if r.len() != 3 || r.at(0) != 3 || r.at(1) != 4 || r.last() != 5 {
		t.Fatalf("ring after 5 pushes into 3: len %d, %d %d %d", r.len(), r.at(0), r.at(1), r.last())
	}
}

func TestConfigErrors(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		cfg  Config
		deps Deps
		want string
	}{
		{Config{}, Deps{}, "no Gatherer"},
		{Config{Interval: -time.Second}, Deps{Gatherer: f.reg}, "negative duration"},
		{Config{ChartStep: time.Hour, ChartSpan: time.Minute}, Deps{Gatherer: f.reg}, "shorter than its step"},
	} {
		if _, err := New(tt.cfg, tt.deps); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error about %q", tt.cfg, err, tt.want)
		}
	}
}
