package producer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

// bigRecord is a call log of about size bytes: a long unknown field, which
// is carried in raw.
func bigRecord(id string, at time.Time, size int) string {
	return callLog(id, at, "completed", `,"transcript":"`+strings.Repeat("x", size)+`"`)
}

// TestTooLargeRecords serves a 2 MB and a 10 MB record beside small ones
// from a fake API on 127.0.0.1: both go to the DLQ (the 2 MB one whole,
// the 10 MB one over dlq_max_message_bytes by reference), the small ones
// are published, the window completes, and no later rung dead-letters them
// again. A bus whose limit is below max_message_bytes refuses the 2 MB
// event with schemas.ErrTooLarge: it is dead-lettered the same way and the
// rest of its batch is published.
func TestTooLargeRecords(t *testing.T) {
	at := func(d time.Duration) time.Time { return edgeT0.Add(d) }
	big2 := bigRecord("big2", at(-3*time.Minute), 2<<20)
	big10 := bigRecord("big10", at(-2*time.Minute), 10<<20)
	recs := []fakeRecord{
		{at(-4 * time.Minute), callLog("s1", at(-4*time.Minute), "completed", "")},
		{at(-3 * time.Minute), big2},
		{at(-150 * time.Second), callLog("s2", at(-150*time.Second), "completed", "")},
		{at(-2 * time.Minute), big10},
		{at(-90 * time.Second), callLog("s3", at(-90*time.Second), "completed", "")},
	}
	for _, tt := range []struct {
		name      string
		maxEvent  int // producer.max_message_bytes; 0 keeps the default
		busLimit  int // the events topic's limit
		dlqLimit  int // the DLQ topic's limit
		reason2MB string
		stored2MB string
	}{
		{"over max_message_bytes", 0, 1 << 20, 64 << 20, "over producer.max_message_bytes", "whole"},
		{"refused by the bus", 4 << 20, 1 << 20, 64 << 20, "the bus refused", "whole"},
		// A DLQ topic smaller than dlq_max_message_bytes says: the 2 MB
		// record is refused whole and goes by reference.
		{"refused by the DLQ", 0, 1 << 20, 1 << 20, "over producer.max_message_bytes", "by_reference"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api := newFakeAPI(t)
			api.set(recs...)
			cfg := edgeConfig()
			if tt.maxEvent > 0 {
				cfg.MaxMessageBytes = tt.maxEvent
			}
			bus := &busPublisher{limit: tt.busLimit, limits: map[string]int{"dlq": tt.dlqLimit}}
			ep := newEdgeProducer(t, newClient(t, api.srv.URL, "tok"), cfg, bus, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
			ep.pollUntil(t, edgeT0.Add(40*time.Minute)) // every rung reads them

			events := bus.events(t, "calls")
			keys := map[string]bool{}
			for _, e := range events {
				keys[e.CallKey] = true
			}
			if len(events) != 3 || !keys["s1"] || !keys["s2"] || !keys["s3"] {
				t.Fatalf("published %v, want s1, s2 and s3 once each", keys)
			}
			dlq := bus.on("dlq")
			if len(dlq) != 2 {
				t.Fatalf("%d records on the DLQ, want the 2 MB and the 10 MB one once each", len(dlq))
			}
			for _, m := range dlq {
				md := m.Metadata
				raw := big2
				if md[DLQCallKeyMetadata] == "big10" {
					raw = big10
				}
				sum := sha256.Sum256([]byte(raw))
				if md[DLQKindMetadata] != kindTooLarge || !strings.HasPrefix(md[schemas.DLQReasonMetadata], "too large") ||
					md[schemas.DLQOrgMetadata] != "acme" || md[schemas.KeyMetadata] != "acme" ||
					md[DLQRawSizeMetadata] != strconv.Itoa(len(raw)) || md[DLQRawSHA256Metadata] != hex.EncodeToString(sum[:]) {
					t.Errorf("DLQ metadata of %s: %v", md[DLQCallKeyMetadata], md)
				}
				switch md[DLQCallKeyMetadata] {
				case "big2":
					want := big2
					if tt.stored2MB == "by_reference" {
						want = big2[:dlqExcerpt]
					}
					if md[DLQStoredMetadata] != tt.stored2MB || string(m.Payload) != want || !strings.Contains(md[schemas.DLQReasonMetadata], tt.reason2MB) {
						t.Errorf("2 MB record: stored %s, %d bytes, reason %q", md[DLQStoredMetadata], len(m.Payload), md[schemas.DLQReasonMetadata])
					}
				case "big10":
					if md[DLQStoredMetadata] != "by_reference" || string(m.Payload) != big10[:dlqExcerpt] {
						t.Errorf("10 MB record: stored %s, %d bytes", md[DLQStoredMetadata], len(m.Payload))
					}
				default:
					t.Errorf("DLQ record with call key %q", md[DLQCallKeyMetadata])
				}
			}
			whole, byRef := 1.0, 1.0
			if tt.stored2MB == "by_reference" {
				whole, byRef = 0, 2
			}
			if got := metricValue(t, ep.reg, "callstream_producer_dead_lettered_total", "acme", kindTooLarge); got != whole {
				t.Errorf("dead_lettered_total{too_large} = %v, want %v", got, whole)
			}
			if got := metricValue(t, ep.reg, "callstream_producer_dead_lettered_total", "acme", kindTooLarge+byReference); got != byRef {
				t.Errorf("dead_lettered_total{too_large_by_reference} = %v, want %v", got, byRef)
			}
			if n := ep.windowsNotComplete(t); n != 0 {
				t.Errorf("%v windows not complete", n)
			}
		})
	}
}

// TestSmallerPagesWhenBodyTooLarge serves pages larger than the client's
// body limit from a fake API on 127.0.0.1: the window is read again in
// smaller pages until they fit, and every record is published.
func TestSmallerPagesWhenBodyTooLarge(t *testing.T) {
	api := newFakeAPI(t)
	var recs []fakeRecord
	for i := range 200 {
		ts := edgeT0.Add(-30*time.Minute + time.Duration(i)*time.Second)
		recs = append(recs, fakeRecord{ts, callLog(fmt.Sprint("c", i), ts, "completed", `,"note":"`+strings.Repeat("n", 800)+`"`)})
	}
	api.set(recs...)
	client, err := unpod.New(unpod.Config{BaseURL: api.srv.URL, Token: "tok", RateLimit: -1, MaxBodyBytes: 50_000,
		InitialBackoff: 10 * time.Millisecond, MaxRetryTime: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	bus := &busPublisher{}
	ep := newEdgeProducer(t, client, edgeConfig(), bus, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
	if err := ep.pollOrg(context.Background(), "acme"); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if n := len(bus.on("calls")); n != 200 {
		t.Fatalf("published %d of 200 records", n)
	}
	if n := metricValue(t, ep.reg, "callstream_producer_window_reads_total", "acme", "smaller_pages"); n < 1 {
		t.Errorf("smaller_pages = %v, want at least one fallback", n)
	}
	if ep.checkpoint("acme").Rungs[0].Frontier.Before(edgeT0.Add(-time.Minute)) {
		t.Error("the window was not marked done")
	}
}

// TestPastLastPageRereads: page 1 overstates count, so the last page the
// producer asks for answers 404 "Invalid page.": the window is read again
// instead of the organization being paused as unknown.
func TestPastLastPageRereads(t *testing.T) {
	api := newFakeAPI(t)
	var recs []fakeRecord
	for i := range 25 {
		ts := edgeT0.Add(-30*time.Minute + time.Duration(i)*time.Second)
		recs = append(recs, fakeRecord{ts, callLog(fmt.Sprint("c", i), ts, "completed", "")})
	}
	api.set(recs...)
	api.inflate, api.inflateN = 10, 1
	cfg := edgeConfig()
	cfg.PageSize = 10
	bus := &busPublisher{}
	ep := newEdgeProducer(t, newClient(t, api.srv.URL, "tok"), cfg, bus, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
	if err := ep.pollOrg(context.Background(), "acme"); err != nil {
		t.Fatalf("poll: %v (a 404 past the last page paused the organization)", err)
	}
	if n := len(bus.on("calls")); n != 25 {
		t.Fatalf("published %d of 25 records", n)
	}
	if n := metricValue(t, ep.reg, "callstream_producer_window_reads_total", "acme", "reread"); n < 1 {
		t.Errorf("reread = %v, want the window read again", n)
	}
}

// TestEmptyFirstPageWithCount: page 1 says count 3 and lists nothing (a
// count that includes records the list leaves out, or ones deleted between
// the count and the page). The empty page says nothing of a clamped
// page_size, so the window is read as usual and not left broken.
func TestEmptyFirstPageWithCount(t *testing.T) {
	api := newFakeAPI(t)
	api.inflate, api.inflateN = 3, 1
	bus := &busPublisher{}
	ep := newEdgeProducer(t, newClient(t, api.srv.URL, "tok"), edgeConfig(), bus, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
	if err := ep.pollOrg(context.Background(), "acme"); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if n := len(bus.on("calls")); n != 0 {
		t.Fatalf("published %d records from empty pages", n)
	}
	if ep.checkpoint("acme").Rungs[0].Frontier.Before(edgeT0.Add(-time.Minute)) {
		t.Error("the window was not marked done")
	}
}

// TestRedirectPausesOrg: an https API that redirects to plain http on
// another listener. The token never reaches it, the organization is paused
// as permanent, and the window is not marked done (an empty page at the
// target would have marked it done and lost its calls).
func TestRedirectPausesOrg(t *testing.T) {
	var leaked atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
		w.Write([]byte(`{"count":0,"data":[]}`))
	}))
	defer target.Close()
	src := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.RequestURI(), http.StatusMovedPermanently)
	}))
	defer src.Close()
	client, err := unpod.New(unpod.Config{BaseURL: src.URL, Token: "tok-redirect", RateLimit: -1, HTTPClient: src.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ep := newEdgeProducer(t, client, edgeConfig(), &busPublisher{}, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
	before := ep.checkpoint("acme").Rungs[0].Frontier
	err = ep.pollOrg(context.Background(), "acme")
	if !errors.Is(err, unpod.ErrRedirect) || !unpod.IsPermanent(err) {
		t.Fatalf("poll: %v, want a permanent ErrRedirect", err)
	}
	if !strings.Contains(err.Error(), target.Listener.Addr().String()) || strings.Contains(err.Error(), "tok-redirect") {
		t.Errorf("error %q: want the target host named, without the token", err)
	}
	if after := ep.checkpoint("acme").Rungs[0].Frontier; !after.Equal(before) {
		t.Errorf("frontier moved from %s to %s: the window was marked done", before, after)
	}
	if n := leaked.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
}

// TestRetryAfterSetsNextPoll: a 429 whose Retry-After outlasts the client's
// retry budget pauses the organization for that long (capped at an hour,
// logged) instead of the short org backoff, and the API is not asked again
// meanwhile.
func TestRetryAfterSetsNextPoll(t *testing.T) {
	for _, tt := range []struct {
		header, want string
		capped       bool
	}{
		{"45", "45s", false},
		{"7200", "1h0m0s", true},
		{"259200", "1h0m0s", true}, // three days: capped, not dropped
	} {
		t.Run(tt.header, func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				w.Header().Set("Retry-After", tt.header)
				w.WriteHeader(http.StatusTooManyRequests)
				w.Write([]byte(`{"detail":"Request was throttled."}`))
			}))
			defer srv.Close()
			cfg := edgeConfig()
			cfg.OrgBackoff, cfg.OrgBackoffMax = 10*time.Millisecond, 20*time.Millisecond
			ep := newEdgeProducer(t, newClient(t, srv.URL, "tok"), cfg, &busPublisher{}, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { ep.orgLoop(ctx, "acme"); close(done) }()
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(ep.logs.String(), "Retry-After") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond) // ten org backoffs: a loop ignoring Retry-After asks again
			cancel()
			<-done
			logs := ep.logs.String()
			if !strings.Contains(logs, `"retry_in":"`+tt.want+`"`) {
				t.Errorf("want retry_in %s in:\n%s", tt.want, logs)
			}
			if strings.Contains(logs, "capped") != tt.capped {
				t.Errorf("capped logged = %v, want %v", !tt.capped, tt.capped)
			}
			if n.Load() != 1 {
				t.Errorf("%d requests; the organization was polled again before Retry-After", n.Load())
			}
		})
	}
}

// callsAPI is a fake API holding n completed calls, c0 to c<n-1>, one a
// second going back from 5 s before edgeT0.
func callsAPI(t *testing.T, n int) *fakeAPI {
	api := newFakeAPI(t)
	var recs []fakeRecord
	for i := range n {
		at := edgeT0.Add(-time.Duration(5+i) * time.Second)
		recs = append(recs, fakeRecord{at, callLog("c"+strconv.Itoa(i), at, "completed", "")})
	}
	api.set(recs...)
	return api
}

// TestServerClampsPageSize: an API that serves fewer records a page than
// page_size asks for (and says so only by the size of page 1) is paged at
// its own size: every record of the window is published once, in as many
// requests as it has pages.
func TestServerClampsPageSize(t *testing.T) {
	api := callsAPI(t, 60)
	api.maxSize = 20
	cfg := edgeConfig()
	cfg.PageSize = 100
	bus := &busPublisher{}
	ep := newEdgeProducer(t, newClient(t, api.srv.URL, "tok"), cfg, bus, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
	w := Window{Start: edgeT0.Add(-time.Hour), End: edgeT0}
	if err := ep.readWindow(context.Background(), "acme", w); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range bus.events(t, "calls") {
		seen[e.CallKey]++
	}
	for i := range 60 {
		if k := "c" + strconv.Itoa(i); seen[k] != 1 {
			t.Errorf("call %s published %d times, want once", k, seen[k])
		}
	}
	// Three pages of 20: no request for a page past the end.
	if api.requests != 3 {
		t.Errorf("%d requests for 60 records served 20 a page, want 3", api.requests)
	}
}

// TestCreatedAndUpdatedCounts: a call's first revision counts as created,
// a later one as updated, in Stats and in the published metric.
func TestCreatedAndUpdatedCounts(t *testing.T) {
	api := newFakeAPI(t)
	at := edgeT0.Add(-time.Minute)
	api.set(fakeRecord{at, callLog("c1", at, "completed", "")}, fakeRecord{at, callLog("c2", at, "completed", "")})
	bus := &busPublisher{}
	ep := newEdgeProducer(t, newClient(t, api.srv.URL, "tok"), edgeConfig(), bus, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
	w := Window{Start: edgeT0.Add(-time.Hour), End: edgeT0}
	if err := ep.readWindow(context.Background(), "acme", w); err != nil {
		t.Fatal(err)
	}
	api.set(fakeRecord{at, callLog("c1", at, "failed", "")}, fakeRecord{at, callLog("c2", at, "completed", "")})
	if err := ep.readWindow(context.Background(), "acme", w); err != nil {
		t.Fatal(err)
	}
	if st := ep.Stats(); st.Published != 3 || st.Updated != 1 {
		t.Errorf("stats %+v, want 3 published, 1 of them an update", st)
	}
	for typ, want := range map[string]float64{schemas.TypeCallCreated: 2, schemas.TypeCallUpdated: 1} {
		if got := testutil.ToFloat64(ep.m.published.WithLabelValues("acme", typ)); got != want {
			t.Errorf("published{type=%s} = %v, want %v", typ, got, want)
		}
	}
}

// tooLargeAbove answers ErrBodyTooLarge for pages of more than limit
// records, as the client does for a body over its limit, and records the
// page sizes asked for.
type tooLargeAbove struct {
	Source
	limit int
	sizes []int
}

func (s *tooLargeAbove) CallLogs(ctx context.Context, q unpod.Query) (*unpod.Page, error) {
	s.sizes = append(s.sizes, q.PageSize)
	if q.PageSize > s.limit {
		return nil, fmt.Errorf("page %d: %w", q.Page, unpod.ErrBodyTooLarge)
	}
	return s.Source.CallLogs(ctx, q)
}

// TestPagesTooLargeAreHalved: a page over the client's body limit is read
// again at half the page size, down to minPageSize; a window whose pages
// are too large even then is an error, not a loop.
func TestPagesTooLargeAreHalved(t *testing.T) {
	api := callsAPI(t, 30)
	cfg := edgeConfig()
	cfg.PageSize = 4 * minPageSize
	w := Window{Start: edgeT0.Add(-time.Hour), End: edgeT0}
	for _, tc := range []struct {
		limit int
		sizes []int
		err   bool
	}{
		{2 * minPageSize, []int{4 * minPageSize, 2 * minPageSize}, false},
		{minPageSize - 1, []int{4 * minPageSize, 2 * minPageSize, minPageSize}, true},
	} {
		src := &tooLargeAbove{Source: newClient(t, api.srv.URL, "tok"), limit: tc.limit}
		bus := &busPublisher{}
		ep := newEdgeProducer(t, nil, cfg, bus, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
		ep.deps.Source = src
		err := ep.readWindow(context.Background(), "acme", w)
		if tc.err != errors.Is(err, unpod.ErrBodyTooLarge) {
			t.Fatalf("limit %d: %v", tc.limit, err)
		}
		if got := src.sizes[:min(len(src.sizes), len(tc.sizes))]; !slices.Equal(got, tc.sizes) || (tc.err && len(src.sizes) != len(tc.sizes)) {
			t.Errorf("limit %d: page sizes %v, want %v first", tc.limit, src.sizes, tc.sizes)
		}
		if n := len(bus.events(t, "calls")); !tc.err && n != 30 {
			t.Errorf("limit %d: %d calls published, want 30", tc.limit, n)
		}
	}
}

// TestFailureWithoutRetryAfterBacksOff: a failure the server gives no
// Retry-After for waits the org backoff (10-20 ms here), not nothing: a
// loop that asked again at once would send hundreds of requests in the
// 200 ms.
func TestFailureWithoutRetryAfterBacksOff(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	cfg := edgeConfig()
	cfg.OrgBackoff, cfg.OrgBackoffMax = 10*time.Millisecond, 20*time.Millisecond
	// A client that gives up at once: the producer's loop is what waits.
	client, err := unpod.New(unpod.Config{BaseURL: srv.URL, Token: "tok", RateLimit: -1, InitialBackoff: time.Second,
		MaxBackoff: time.Second, MaxRetryTime: time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ep := newEdgeProducer(t, client, cfg, &busPublisher{}, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ep.orgLoop(ctx, "acme"); close(done) }()
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	if got := n.Load(); got < 2 || got > 40 {
		t.Errorf("%d requests in 200 ms with a 10-20 ms backoff, want 2 to 40", got)
	}
}

// TestTooLargeOnKafka is TestTooLargeRecords against the real broker: the
// events topic keeps Kafka's default limit (about 1 MB), the DLQ topic
// takes 9 MiB (max.message.bytes, with the publisher's batch_bytes above
// it). The small records are on the events topic, the 2 MB record whole
// and the 10 MB one by reference on the DLQ topic, and the window is done.
func TestTooLargeOnKafka(t *testing.T) {
	at := func(d time.Duration) time.Time { return edgeT0.Add(d) }
	big2 := bigRecord("big2", at(-3*time.Minute), 2<<20)
	big10 := bigRecord("big10", at(-2*time.Minute), 10<<20)
	api := newFakeAPI(t)
	api.set(fakeRecord{at(-4 * time.Minute), callLog("s1", at(-4*time.Minute), "completed", "")},
		fakeRecord{at(-3 * time.Minute), big2}, fakeRecord{at(-2 * time.Minute), big10},
		fakeRecord{at(-90 * time.Second), callLog("s2", at(-90*time.Second), "completed", "")})
	deps, kcfg := kafkaDeps(t, newClient(t, api.srv.URL, "tok"), nil)
	ctx := context.Background()
	deps.DLQTopic += ".big"
	if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: deps.DLQTopic, Partitions: 1,
		Configs: map[string]string{"max.message.bytes": strconv.Itoa(9 << 20)}}); err != nil {
		t.Fatal(err)
	}
	pcfg := kafkabus.DefaultPublisherConfig()
	pcfg.Config, pcfg.BatchBytes = kcfg, 16<<20
	pub, err := kafkabus.NewPublisher(pcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	deps.Publisher, deps.Now = pub, (&fakeClock{now: edgeT0}).Now
	p, err := New(edgeConfig(), deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.pollOrg(ctx, "acme"); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if f := p.checkpoint("acme").Rungs[0].Frontier; f.Before(edgeT0.Add(-time.Minute)) {
		t.Errorf("the window was not marked done: frontier %s", f)
	}
	keys := map[string]bool{}
	for _, e := range readTopic(t, kcfg, deps.Topic) {
		keys[e.CallKey] = true
	}
	if len(keys) != 2 || !keys["s1"] || !keys["s2"] {
		t.Errorf("events topic holds %v, want s1 and s2", keys)
	}
	stored := map[string]string{}
	if err := kafkabus.ReadRange(ctx, kcfg, deps.DLQTopic, nil, func(m kafka.Message) error {
		var key, how string
		for _, h := range m.Headers {
			switch h.Key {
			case DLQCallKeyMetadata:
				key = string(h.Value)
			case DLQStoredMetadata:
				how = string(h.Value)
			}
		}
		want := map[string]string{"big2": big2, "big10": big10[:dlqExcerpt]}[key]
		if string(m.Key) != "acme" || string(m.Value) != want {
			t.Errorf("DLQ record %s: key %q, %d bytes", key, m.Key, len(m.Value))
		}
		stored[key] = how
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 || stored["big2"] != "whole" || stored["big10"] != "by_reference" {
		t.Errorf("DLQ holds %v, want big2 whole and big10 by reference", stored)
	}
}

// TestOrgListingPastLastPage: with no Org-Handles configured, an
// organizations listing whose second page answers 404 "Invalid page."
// (its count promised more) still starts the producer with the
// organizations of page 1.
func TestOrgListingPastLastPage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("page") != "" {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"detail":"Invalid page."}`))
			return
		}
		w.Write([]byte(`{"count":3,"data":[{"name":"Acme","domain_handle":"acme"},{"name":"Globex","domain_handle":"globex"}]}`))
	}))
	defer srv.Close()
	cfg := edgeConfig()
	cfg.Orgs = nil
	ep := newEdgeProducer(t, newClient(t, srv.URL, "tok"), cfg, &busPublisher{}, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a listing retried forever fails, not hangs
	defer cancel()
	orgs, err := ep.orgs(ctx)
	if err != nil || len(orgs) != 2 || orgs[0] != "acme" || orgs[1] != "globex" {
		t.Fatalf("orgs = %v, %v; want acme and globex", orgs, err)
	}
}

// TestDLQLimitLowerThanConfigured: the DLQ topic keeps Kafka's default limit
// (about 1 MB) and the publisher its default batch_bytes, below the
// producer's dlq_max_message_bytes (8 MiB). The bus refuses the 2 MB record
// whole as too large (schemas.ErrTooLarge from kafkabus), so it goes on the
// DLQ by reference, and the window is done.
func TestDLQLimitLowerThanConfigured(t *testing.T) {
	at := func(d time.Duration) time.Time { return edgeT0.Add(d) }
	big2 := bigRecord("big2", at(-3*time.Minute), 2<<20)
	api := newFakeAPI(t)
	api.set(fakeRecord{at(-4 * time.Minute), callLog("s1", at(-4*time.Minute), "completed", "")},
		fakeRecord{at(-3 * time.Minute), big2})
	deps, kcfg := kafkaDeps(t, newClient(t, api.srv.URL, "tok"), nil)
	deps.Now = (&fakeClock{now: edgeT0}).Now
	p, err := New(edgeConfig(), deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.pollOrg(context.Background(), "acme"); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if f := p.checkpoint("acme").Rungs[0].Frontier; f.Before(edgeT0.Add(-time.Minute)) {
		t.Errorf("the window was not marked done: frontier %s", f)
	}
	var stored []string
	if err := kafkabus.ReadRange(context.Background(), kcfg, deps.DLQTopic, nil, func(m kafka.Message) error {
		for _, h := range m.Headers {
			if h.Key == DLQStoredMetadata {
				stored = append(stored, string(h.Value))
			}
		}
		if len(m.Value) > dlqExcerpt {
			t.Errorf("DLQ record of %d bytes, want the %d-byte excerpt", len(m.Value), dlqExcerpt)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0] != "by_reference" {
		t.Errorf("DLQ holds %v, want the 2 MB record once, by reference", stored)
	}
}
