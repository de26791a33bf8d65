package consumers

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/callstream/callstream/pkg/telemetry"
	"github.com/callstream/callstream/schemas"
)

// TestFreshnessObserved: every event a plug-in handled is observed in
// callstream_event_freshness_seconds{stage="handled"} under the plug-in's
// name and the event's type, as the seconds from its creation_time to
// when it was handled; poisoned messages are not.
func TestFreshnessObserved(t *testing.T) {
	rec := newRecorder("rec")
	bus, rt, stop := startGoChannelRuntime(t, fastConfig(), rec)
	const n, age, updAge = 20, 30 * time.Second, 10 * time.Minute
	start := time.Now()
	for i := range n {
		e := testEvent(i)
		e.CreationTime = start.Add(-age).UTC()
		if err := bus.Publish("test."+schemas.CallsTopic, eventMessage(t, e)); err != nil {
			t.Fatal(err)
		}
	}
	upd := testEvent(n)
	upd.Revision, upd.CreationTime = 2, start.Add(-updAge).UTC()
	for _, p := range poisonMessages(t) {
		if err := bus.Publish("test."+schemas.CallsTopic, p.msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.Publish("test."+schemas.CallsTopic, eventMessage(t, upd)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "all events handled", func() bool { return rec.count() == n+1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start).Seconds()
	hist := func(typ string) *dto.Histogram {
		var m dto.Metric
		if err := rt.metrics.freshness.WithLabelValues(telemetry.StageHandled, "rec", typ).(interface{ Write(*dto.Metric) error }).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram()
	}
	for _, tc := range []struct {
		typ   string
		count uint64
		age   time.Duration
	}{{schemas.TypeCallCreated, n, age}, {schemas.TypeCallUpdated, 1, updAge}} {
		h := hist(tc.typ)
		if h.GetSampleCount() != tc.count {
			t.Fatalf("%s: %d observations, want %d (one per handled event)", tc.typ, h.GetSampleCount(), tc.count)
		}
		lo, hi := float64(tc.count)*tc.age.Seconds(), float64(tc.count)*(tc.age.Seconds()+elapsed)
		if s := h.GetSampleSum(); s < lo || s > hi {
			t.Fatalf("%s: sum %.1f s, want between %.1f and %.1f (%d events %s old)", tc.typ, s, lo, hi, tc.count, tc.age)
		}
	}
}
