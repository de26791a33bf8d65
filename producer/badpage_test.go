package producer

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/schemas"
)

// TestUnknownStatusAndMalformedPage serves, through the real API client, a
// page holding a record with an unknown status next to good ones, after a
// first answer that is not JSON at all: the bad record is dead-lettered and
// logged with its reason, the malformed body is retried, and every good
// record is published.
func TestUnknownStatusAndMalformedPage(t *testing.T) {
	var calls atomic.Int32
	good := func(i int) string {
		return fmt.Sprintf(`{"source_number":"+9111111111%d","destination_number":"+14155551234","call_type":"outbound","call_status":"completed","creation_time":"2026-02-07T06:5%d:00Z","call_duration":"0:03:27","end_reason":"caller_hangup"}`, i, i)
	}
	bad := `{"source_number":"+911","destination_number":"+1415","call_type":"inbound","call_status":"ringing","creation_time":"2026-02-07T06:57:30Z"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Write([]byte("<html>502 Bad Gateway</html>"))
			return
		}
		fmt.Fprintf(w, `{"count":4,"status_code":200,"message":"ok","data":[%s,%s,%s,%s]}`, good(1), bad, good(2), good(3))
	}))
	defer srv.Close()

	logs := &syncBuffer{}
	bus := &busPublisher{}
	var mu sync.Mutex
	var got []schemas.CallEvent
	now := time.Date(2026, 2, 7, 7, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.Lookback = 30 * time.Minute // one window: the server ignores start_date and end_date
	reg := prometheus.NewRegistry()
	p, err := New(cfg, Deps{Source: newClient(t, srv.URL, "tok"), Publisher: bus, Topic: "calls", DLQTopic: "dlq", Registerer: reg,
		Store: NewFileStore(filepath.Join(t.TempDir(), "state.json")), Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		Now:     func() time.Time { return now },
		OnEvent: func(e *schemas.CallEvent) { mu.Lock(); got = append(got, *e); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.pollOrg(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("published %d events, want the 3 good records", len(got))
	}
	if dlq := bus.on("dlq"); len(dlq) != 1 || string(dlq[0].Payload) != bad {
		t.Fatalf("DLQ holds %d records, want the bad one", len(dlq))
	}
	out := logs.String()
	if !strings.Contains(out, `unknown call_status \"ringing\"`) || !strings.Contains(out, "dead-lettered") {
		t.Errorf("no clear log line for the unknown status:\n%s", out)
	}
	if st := p.Stats(); st.Invalid == 0 {
		t.Errorf("invalid records not counted: %+v", st)
	}
	if calls.Load() < 2 {
		t.Error("the malformed body was not retried")
	}
	for name, want := range map[string]float64{
		"callstream_producer_invalid_records_total":  1,
		"callstream_producer_dead_lettered_total":    1,
		"callstream_producer_events_published_total": 3,
		"callstream_producer_remembered_calls":       3,
	} {
		if got := metricSum(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// metricSum adds up every series of a metric family.
func metricSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
