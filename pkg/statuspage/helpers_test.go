package statuspage

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fixture is a registry with the series the page reads, named and labelled
// as the packages that own them define them, for tests of the page alone.
type fixture struct {
	reg                                 *prometheus.Registry
	read, published, calls, messages    *prometheus.CounterVec
	lag, paused, reason, lastPoll       *prometheus.GaugeVec
	consumerLag, active                 *prometheus.GaugeVec
	alertValue, threshold, starts, ends *prometheus.GaugeVec
	queued, open, disabled              *prometheus.GaugeVec
	outcomes, producerDLQ               *prometheus.CounterVec
	freshness                           *prometheus.HistogramVec
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	cv := func(name string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: name}, labels)
	}
	gv := func(name string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: name}, labels)
	}
	f := &fixture{
		reg:         prometheus.NewRegistry(),
		read:        cv(mRead, "org"),
		published:   cv(mPublished, "org", "type"),
		calls:       cv(mCalls, "org", "status"),
		messages:    cv(mMessages, "plugin", "outcome"),
		lag:         gv(mLag, "org"),
		paused:      gv(mPaused, "org"),
		reason:      gv(mPauseReason, "org", "reason"),
		lastPoll:    gv(mLastPoll, "org", "outcome"),
		consumerLag: gv(mConsumerLag, "plugin"),
		active:      gv(mAlerts, "rule", "state"),
		alertValue:  gv(mAlertValue, "alert_id", "rule", "org", "group", "state"),
		threshold:   gv(mAlertThresh, "alert_id"),
		starts:      gv(mAlertStarts, "alert_id"),
		ends:        gv(mAlertEnds, "alert_id"),
		queued:      gv(mWebhookQueue, "endpoint"),
		open:        gv(mWebhookOpen, "endpoint"),
		disabled:    gv(mWebhookOff, "endpoint"),
		outcomes:    cv(mWebhookOut, "endpoint", "outcome"),
		producerDLQ: cv(mProducerDLQ, "reason"),
		freshness: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: mFreshness, Help: mFreshness,
			Buckets: []float64{1, 2, 5, 10}}, []string{"stage"}),
	}
	for _, c := range []prometheus.Collector{f.read, f.published, f.calls, f.messages, f.lag, f.paused, f.reason, f.lastPoll,
		f.consumerLag, f.active, f.alertValue, f.threshold, f.starts, f.ends, f.queued, f.open, f.disabled, f.outcomes,
		f.producerDLQ, f.freshness} {
		f.reg.MustRegister(c)
	}
	return f
}

// newPage returns a page on f's registry with a fake clock, as `callstream
// run` with every plug-in would have it.
func newPage(t testing.TB, f *fixture, clock *fakeClock, cfg Config) *Page {
	t.Helper()
	p, err := New(cfg, Deps{Gatherer: f.reg, Process: "callstream run", Producer: true,
		Plugins: []string{"storage", "alerting", "webhooks", "lake"}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ptr(f float64) *float64 { return &f }

func eqPtr(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	d := *a - *b
	return d < 1e-9 && d > -1e-9
}
