package alerting

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// logLines decodes JSON log lines.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestLateCallsLogLevelAndDurations: a call the producer read within the
// grace period but that still arrived after it is a warning (the pipeline
// is slower than the grace); one the producer itself read later than that
// (a late record, an update, a rescan's find), which the watermark may
// have passed before it was read, is expected and logged at debug.
// Durations are logged as strings ("1m0s"), not as nanoseconds.
func TestLateCallsLogLevelAndDurations(t *testing.T) {
	for _, tt := range []struct {
		readAfter time.Duration // from creation to the producer's read
		level     string
	}{
		{30 * time.Second, "WARN"},
		{time.Minute, "WARN"}, // the grace: in time, had it come at once
		{time.Minute + time.Second, "DEBUG"},
		{90 * time.Second, "DEBUG"}, // within grace + idle_timeout too
		{20 * time.Minute, "DEBUG"},
	} {
		t.Run(tt.readAfter.String(), func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			p, err := New(testConfig(""), consumers.Deps{Logger: log, Topics: consumers.NewTopics("test.")})
			if err != nil {
				t.Fatal(err)
			}
			first := call(1, "o", 10*time.Minute, schemas.StatusCompleted)
			first.ObservedAt = first.CreationTime.Add(time.Second)
			late := call(2, "o", 5*time.Minute, schemas.StatusCompleted) // behind the watermark of 9m
			late.ObservedAt = late.CreationTime.Add(tt.readAfter)
			feed(t, p, []schemas.CallEvent{first, late})
			var lines []map[string]any
			for _, l := range logLines(t, &buf) {
				if msg, _ := l["msg"].(string); strings.Contains(msg, "grace period") {
					lines = append(lines, l)
				}
			}
			if len(lines) != 1 || lines[0]["level"] != tt.level || lines[0]["last_event_id"] != "e2" {
				t.Fatalf("late-call log lines %v, want one %s about e2", lines, tt.level)
			}
			if lines[0]["grace"] != "1m0s" {
				t.Errorf("grace logged as %#v, want \"1m0s\"", lines[0]["grace"])
			}
			if tt.level == "DEBUG" && lines[0]["read_after"] != tt.readAfter.String() {
				t.Errorf("read_after logged as %#v, want %q", lines[0]["read_after"], tt.readAfter.String())
			}
		})
	}
}

// TestSlackTextIsEscaped: &, < and > become entities, so a summary or a
// label holding "<!channel>" or a link cannot ping a channel or hide a
// link; the escaped text reaches a real listener as such.
func TestSlackTextIsEscaped(t *testing.T) {
	n := testNotice(KindFiring, 1)
	n.Alert.Annotations = map[string]string{"summary": "<!channel> R&D line down, see <https://evil.example|the runbook>"}
	n.Alert.Group = map[string]string{"org": "a<b>&c"}
	text := SlackText(n)
	for _, want := range []string{"&lt;!channel&gt;", "R&amp;D", "&lt;https://evil.example|the runbook&gt;", "org=a&lt;b&gt;&amp;c"} {
		if !strings.Contains(text, want) {
			t.Errorf("slack text %q lacks %q", text, want)
		}
	}
	if strings.ContainsAny(text, "<>") || strings.Contains(strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(text, "&amp;", ""), "&lt;", ""), "&gt;", ""), "&") {
		t.Fatalf("slack text %q holds an unescaped <, > or &", text)
	}
	recv := newReceiver(t)
	s := &slackSender{client: recv.srv.Client(), url: recv.srv.URL}
	if err := s.send(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	if err := json.Unmarshal(recv.requests()[0].body, &body); err != nil || body["text"] != text {
		t.Fatalf("slack body %s, want the escaped text", recv.requests()[0].body)
	}
}

// series returns the samples of one metric family by their labels
// rendered "k=v|k=v".
func series(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
			out[strings.Join(parts, "|")] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	if m.GetGauge() != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

// TestAlertMetrics: callstream_alerting_alerts reads 0 for every rule and
// state when nothing fires; each firing alert is exported with its
// current value, threshold and start, and once resolved with its end,
// for an hour.
func TestAlertMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	clock := &manualClock{now: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
	cfg := testConfig("")
	cfg.Clock = clock.Now
	pub := &memPublisher{}
	p, err := New(cfg, consumers.Deps{Registerer: reg, Publisher: pub, Topics: consumers.NewTopics("test.")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p.tick(ctx)
	active := series(t, reg, "callstream_alerting_alerts")
	if len(active) != 2*len(cfg.Rules) {
		t.Fatalf("callstream_alerting_alerts has %d series with nothing firing, want %d (every rule, pending and firing): %v", len(active), 2*len(cfg.Rules), active)
	}
	for k, v := range active {
		if v != 0 {
			t.Fatalf("%s = %v with nothing firing", k, v)
		}
	}
	if s := series(t, reg, "callstream_alerting_alert_value"); len(s) != 0 {
		t.Fatalf("alert values with nothing firing: %v", s)
	}

	// One rule from here on: with every source idle for an hour of the
	// wall clock, the absence and drop rules would rightly fire too.
	reg = prometheus.NewRegistry()
	cfg.Rules = cfg.Rules[:1]
	pub = &memPublisher{}
	p, err = New(cfg, consumers.Deps{Registerer: reg, Publisher: pub, Topics: consumers.NewTopics("test.")})
	if err != nil {
		t.Fatal(err)
	}
	all, fireAt := spikeStream(t)
	feed(t, p, all[:fireAt+30])
	p.tick(ctx)
	firing := pub.alerts(t)[0]
	id := "alert_id=" + firing.AlertID
	want := id + "|group=org=acme|org=acme|rule=missed-call-spike|state=firing"
	values := series(t, reg, "callstream_alerting_alert_value")
	if v, ok := values[want]; !ok || len(values) != 1 || v < 0.5 {
		t.Fatalf("alert values %v, want one series %s at a ratio of at least 0.5", values, want)
	}
	if th := series(t, reg, "callstream_alerting_alert_threshold"); th[id] != 0.5 {
		t.Fatalf("thresholds %v, want 0.5 for %s", th, id)
	}
	if st := series(t, reg, "callstream_alerting_alert_starts_at_seconds"); st[id] != float64(firing.StartsAt.Unix()) {
		t.Fatalf("starts_at %v, want %d", st, firing.StartsAt.Unix())
	}
	if e := series(t, reg, "callstream_alerting_alert_ends_at_seconds"); len(e) != 0 {
		t.Fatalf("ends_at %v while firing", e)
	}
	if a := series(t, reg, "callstream_alerting_alerts"); a["rule=missed-call-spike|state=firing"] != 1 {
		t.Fatalf("callstream_alerting_alerts %v, want the firing counted", a)
	}

	feed(t, p, all[fireAt+30:])
	p.tick(ctx)
	got := pub.alerts(t)
	resolved := got[len(got)-1]
	if resolved.State != schemas.AlertResolved || resolved.AlertID != firing.AlertID {
		t.Fatalf("last alert event %+v, want the resolution", resolved)
	}
	values = series(t, reg, "callstream_alerting_alert_value")
	if _, ok := values[strings.Replace(want, "state=firing", "state=resolved", 1)]; !ok || len(values) != 1 {
		t.Fatalf("alert values after the resolution %v, want only the resolved series", values)
	}
	if e := series(t, reg, "callstream_alerting_alert_ends_at_seconds"); e[id] != float64(resolved.EndsAt.Unix()) {
		t.Fatalf("ends_at %v, want %d", e, resolved.EndsAt.Unix())
	}
	clock.now = clock.now.Add(resolvedRetention - time.Second)
	p.tick(ctx)
	if len(series(t, reg, "callstream_alerting_alert_value")) != 1 {
		t.Fatalf("a resolved alert left the metrics before an hour: %v", series(t, reg, "callstream_alerting_alert_value"))
	}
	clock.now = clock.now.Add(time.Second)
	p.tick(ctx)
	for _, name := range []string{"callstream_alerting_alert_value", "callstream_alerting_alert_threshold",
		"callstream_alerting_alert_starts_at_seconds", "callstream_alerting_alert_ends_at_seconds"} {
		if s := series(t, reg, name); len(s) != 0 {
			t.Fatalf("%s still holds %v an hour after the resolution", name, s)
		}
	}
}

// TestSaveFailureIsTransient: a state store that cannot save is a
// dependency at fault, not the calls: the error is marked Transient, so
// the runtime retries instead of dead-lettering good calls.
func TestSaveFailureIsTransient(t *testing.T) {
	state := &fileState{dir: t.TempDir(), fail: true}
	p, err := New(testConfig(""), consumers.Deps{Topics: consumers.NewTopics("test."), State: state})
	if err != nil {
		t.Fatal(err)
	}
	all, fireAt := spikeStream(t)
	batch := make([]consumers.Delivery, fireAt)
	for i := range batch {
		batch[i] = consumers.Delivery{Event: all[i]}
	}
	err = p.HandleBatch(context.Background(), batch)
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("HandleBatch with a failing store: %v", err)
	}
	if want := consumers.Transient(errors.New("x")); fmt.Sprintf("%T", err) != fmt.Sprintf("%T", want) || consumers.IsPermanent(err) {
		t.Fatalf("save error %T, want it marked Transient (%T)", err, want)
	}
}
