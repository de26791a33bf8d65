package producer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

// fakeAPI is a tiny call-logs API on 127.0.0.1 serving fixed raw records,
// for tests that need records the simulator does not make (huge, broken,
// out of their window). Each record is served for the windows that
// contain its at time, whatever its body says; pages are newest first and
// a page past the end answers Django REST Framework's 404.
type fakeAPI struct {
	srv *httptest.Server

	mu   sync.Mutex
	recs []fakeRecord
	// everywhere are served in every window, as by an API that ignores
	// its filters for them.
	everywhere []string
	inflate    int // add this to count on the next responses ...
	inflateN   int // ... this many of them
	maxSize    int // page_size honoured at most (0: any), as a server that clamps it
	requests   int
	// onRequest, when set, runs (under mu) before each request is
	// answered: a test changes the data between the pages of one read.
	onRequest func(f *fakeAPI, from, to time.Time, page int)
}

type fakeRecord struct {
	at  time.Time
	raw string
}

func newFakeAPI(t testing.TB) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) set(recs ...fakeRecord) {
	f.mu.Lock()
	f.recs = slices.Clone(recs)
	f.mu.Unlock()
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, _ := time.Parse(time.RFC3339Nano, q.Get("start_date"))
	to, _ := time.Parse(time.RFC3339Nano, q.Get("end_date"))
	page, _ := strconv.Atoi(q.Get("page"))
	size, _ := strconv.Atoi(q.Get("page_size"))
	page, size = max(page, 1), max(size, 1)
	f.mu.Lock()
	if f.maxSize > 0 {
		size = min(size, f.maxSize)
	}
	f.requests++
	if f.onRequest != nil {
		f.onRequest(f, from, to, page)
	}
	var match []fakeRecord
	for _, rec := range f.recs {
		if !rec.at.Before(from) && rec.at.Before(to) {
			match = append(match, rec)
		}
	}
	for _, raw := range f.everywhere {
		match = append(match, fakeRecord{to.Add(-time.Nanosecond), raw})
	}
	count := len(match)
	if f.inflateN > 0 {
		f.inflateN--
		count += f.inflate
	}
	f.mu.Unlock()
	slices.SortStableFunc(match, func(a, b fakeRecord) int { return b.at.Compare(a.at) })
	lo := (page - 1) * size
	if page > 1 && lo >= len(match) {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"detail":"Invalid page."}`))
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, `{"count":%d,"status_code":200,"message":"ok","data":[`, count)
	for i, rec := range match[min(lo, len(match)):min(lo+size, len(match))] {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(rec.raw)
	}
	b.WriteString("]}")
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(b.String()))
}

// callLog renders a plain completed call log created at, with extra
// members appended (e.g. `,"note":"..."`).
func callLog(id string, at time.Time, status, extra string) string {
	return fmt.Sprintf(`{"id":%q,"source_number":"+911234567890","destination_number":"+14155551234","call_type":"outbound","call_status":%q,"creation_time":%q,"start_time":null,"end_time":null,"call_duration":0,"end_reason":"x"%s}`,
		id, status, at.UTC().Format(time.RFC3339Nano), extra)
}

// busPublisher is an in-memory bus that keeps what it was sent, per
// topic, and refuses (with schemas.ErrTooLarge, writing nothing of the
// batch) any message over the topic's limit (limits, else limit) when one
// is set: a unit-test stand-in for a bus with size limits.
type busPublisher struct {
	mu     sync.Mutex
	limit  int
	limits map[string]int
	msgs   map[string][]*message.Message
}

func (b *busPublisher) Publish(topic string, msgs ...*message.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit := b.limit
	if l, ok := b.limits[topic]; ok {
		limit = l
	}
	for _, m := range msgs {
		if limit > 0 && messageSize(m) > limit {
			return fmt.Errorf("bus: message of %d bytes: %w", messageSize(m), schemas.ErrTooLarge)
		}
	}
	if b.msgs == nil {
		b.msgs = map[string][]*message.Message{}
	}
	b.msgs[topic] = append(b.msgs[topic], msgs...)
	return nil
}

func (b *busPublisher) Close() error { return nil }

func (b *busPublisher) on(topic string) []*message.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.msgs[topic])
}

// events decodes what was published on topic.
func (b *busPublisher) events(t testing.TB, topic string) []schemas.CallEvent {
	t.Helper()
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	var out []schemas.CallEvent
	for _, m := range b.on(topic) {
		e, err := v.DecodeCall(m.Payload)
		if err != nil {
			t.Fatalf("event on %s: %v", topic, err)
		}
		out = append(out, e)
	}
	return out
}

// edgeProducer is a producer on a fake API with a busPublisher and a
// state file, on a clock the test sets.
type edgeProducer struct {
	*Producer
	reg   *prometheus.Registry
	bus   *busPublisher
	clock *fakeClock
	logs  *syncBuffer
	state string
}

func newEdgeProducer(t testing.TB, client *unpod.Client, cfg Config, bus *busPublisher, clock *fakeClock, state string) *edgeProducer {
	t.Helper()
	ep := &edgeProducer{reg: prometheus.NewRegistry(), bus: bus, clock: clock, logs: &syncBuffer{}, state: state}
	p, err := New(cfg, Deps{Source: client, Publisher: bus, Topic: "calls", DLQTopic: "dlq", Store: NewFileStore(state),
		Logger: newTestLogger(ep.logs), Registerer: ep.reg, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	ep.Producer = p
	return ep
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// metricValue returns one series of a metric family; labels holds every
// label's value in order of name.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			lp := m.GetLabel()
			if len(lp) != len(labels) {
				continue
			}
			for i, l := range lp {
				if l.GetValue() != labels[i] {
					continue series
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return 0
}
