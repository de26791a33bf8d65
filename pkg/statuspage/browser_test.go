package statuspage

import (
	"fmt"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/statuspage/browsertest"
)

// domJS returns the text of every element with a data-k key, the sample
// shown and whether the page kept its marker (it was not reloaded).
const domJS = `(() => {
  const out = {seq: document.body.dataset.seq || "", marker: String(window.__marker || ""), k: {}};
  for (const e of document.querySelectorAll("[data-k]")) out.k[e.dataset.k] = e.textContent;
  return out;
})()`

// dom is what domJS returns.
type dom struct {
	Seq    string            `json:"seq"`
	Marker string            `json:"marker"`
	K      map[string]string `json:"k"`
}

// waitDOM polls the page until ok accepts it.
func waitDOM(t *testing.T, b *browsertest.Browser, what string, ok func(dom) bool) dom {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var d dom
	for {
		d = browsertest.Eval[dom](t, b, domJS, 5*time.Second)
		if ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; page shows %+v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPageInBrowser renders every section from a registry the test sets in
// headless Chromium, opens an alert by its link (#alert-<id>, the
// Alertmanager generatorURL) and watches it resolve without a reload.
func TestPageInBrowser(t *testing.T) {
	b := browsertest.New(t)
	f := newFixture(t)
	now := time.Now()
	f.read.WithLabelValues("acme").Add(1234)
	f.published.WithLabelValues("acme", "callstream.call.created.v1").Add(1200)
	f.calls.WithLabelValues("acme", "completed").Add(1000)
	f.calls.WithLabelValues("acme", "missed").Add(150)
	f.calls.WithLabelValues("acme", "failed").Add(50)
	f.lag.WithLabelValues("acme").Set(12.34)
	f.lag.WithLabelValues("globex").Set(200)
	f.paused.WithLabelValues("globex").Set(1)
	f.reason.WithLabelValues("globex", "forbidden").Set(1)
	f.lastPoll.WithLabelValues("acme", "ok").Set(float64(now.Unix()))
	f.messages.WithLabelValues("storage", "handled").Add(1199)
	f.messages.WithLabelValues("storage", "poisoned").Add(1)
	f.consumerLag.WithLabelValues("storage").Set(17)
	f.queued.WithLabelValues("billing").Set(5)
	f.open.WithLabelValues("billing").Set(1)
	f.outcomes.WithLabelValues("billing", "delivered").Add(900)
	f.disabled.WithLabelValues("crm").Set(1)
	f.outcomes.WithLabelValues("crm", "dlq").Add(3)
	for i := 0; i < 10; i++ {
		f.freshness.WithLabelValues("published").Observe(1.5)
	}
	id := "7c0d2a4e-0d5c-5a43-9d0e-3f3c1b1f0a11"
	f.active.WithLabelValues("failed-call-burst", "firing").Set(1)
	f.alertValue.WithLabelValues(id, "failed-call-burst", "acme", "org=acme", "firing").Set(0.42)
	f.threshold.WithLabelValues(id).Set(0.3)
	f.starts.WithLabelValues(id).Set(float64(now.Add(-time.Minute).Unix()))

	p, err := New(Config{}, Deps{Gatherer: f.reg, Process: "callstream run", Producer: true,
		Plugins: []string{"storage", "alerting", "webhooks"}})
	if err != nil {
		t.Fatal(err)
	}
	p.Sample()
	base := serve(t, p)
	b.Navigate(t, base+"/#alert-"+id)
	d := waitDOM(t, b, "the firing alert", func(d dom) bool { return d.K["alert:"+id+":state"] == "firing" })
	want := map[string]string{
		"stage:read:total": "1,234", "stage:published:total": "1,200", "stage:handled:storage:total": "1,199",
		"org:acme:lag": "12.3 s", "org:globex:lag": "3.3 min", "org:globex:state": "paused: forbidden", "org:acme:state": "polling",
		"org:acme:completed": "1,000", "org:acme:missed": "150", "org:acme:failed": "50",
		"chart:acme:completed": "1,000", "chart:acme:failed": "50",
		"alerts:firing": "1", "alert:" + id + ":value": "0.42",
		"wh:billing:state": "breaker open", "wh:billing:queued": "5", "wh:billing:delivered": "900",
		"wh:crm:state": "disabled", "wh:crm:dlq": "3",
		"dlq:total": "4", "lag:storage": "17",
		"fresh:stage=published:p50": "1.5 s", // 10 observations in the (1, 2] bucket: 1 + 5/10 of it
	}
	for k, v := range want {
		if d.K[k] != v {
			t.Errorf("page shows %s = %q, want %q", k, d.K[k], v)
		}
	}
	target := browsertest.Eval[bool](t, b, `document.getElementById("alert-`+id+`").classList.contains("target") &&
		document.getElementById("alert-`+id+`").closest("#alerts-firing") !== null`, 5*time.Second)
	if !target {
		t.Error("the alert's link (#alert-<id>) does not mark the firing alert")
	}

	// The alert resolves; the page learns it from the stream alone.
	browsertest.Eval[int](t, b, `window.__marker = 1`, 5*time.Second)
	f.active.WithLabelValues("failed-call-burst", "firing").Set(0)
	f.alertValue.DeleteLabelValues(id, "failed-call-burst", "acme", "org=acme", "firing")
	f.alertValue.WithLabelValues(id, "failed-call-burst", "acme", "org=acme", "resolved").Set(0.1)
	f.ends.WithLabelValues(id).Set(float64(time.Now().Unix()))
	seq := p.Sample().Seq
	d = waitDOM(t, b, "the resolved alert", func(d dom) bool { return d.Seq == fmt.Sprint(seq) })
	if d.K["alert:"+id+":state"] != "resolved" || d.K["alert:"+id+":value"] != "0.1" || d.K["alerts:firing"] != "0" {
		t.Errorf("after resolving: state %q value %q firing %q; want resolved, 0.1, 0",
			d.K["alert:"+id+":state"], d.K["alert:"+id+":value"], d.K["alerts:firing"])
	}
	if d.Marker != "1" {
		t.Error("the page was reloaded to show the update")
	}
	if !browsertest.Eval[bool](t, b, `document.getElementById("alert-`+id+`").closest("#alerts-resolved") !== null`, 5*time.Second) {
		t.Error("the resolved alert is not in the resolved list")
	}
	b.Screenshot(t, "statuspage-alone.png")
}
