package producer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

var edgeT0 = time.Date(2026, 2, 7, 12, 0, 0, 0, time.UTC)

func edgeConfig() Config {
	cfg := DefaultConfig()
	cfg.Orgs, cfg.Lookback, cfg.SettleLag, cfg.PollInterval = []string{"acme"}, time.Hour, 30*time.Second, 30*time.Second
	cfg.RescanAges = []time.Duration{0, 5 * time.Minute, 30 * time.Minute}
	return cfg
}

// pollUntil polls org every poll interval until the clock reaches end,
// evicting from the dedup memory every two minutes as Run does.
func (ep *edgeProducer) pollUntil(t testing.TB, end time.Time) {
	t.Helper()
	for i := 0; ep.clock.Now().Before(end); i++ {
		if err := ep.pollOrg(context.Background(), "acme"); err != nil {
			t.Fatalf("poll at %s: %v", ep.clock.Now(), err)
		}
		if i%4 == 3 {
			ep.evict()
		}
		ep.clock.Add(ep.cfg.PollInterval)
	}
}

func (ep *edgeProducer) windowsNotComplete(t testing.TB) float64 {
	return metricValue(t, ep.reg, "callstream_producer_window_reads_total", "acme", "reread") +
		metricValue(t, ep.reg, "callstream_producer_window_reads_total", "acme", "inconsistent")
}

// TestDeadLetterUnknownAndUndecodable serves, among good records, two
// records with the unknown status "ringing", one with "bogus" and one that
// is no call log, through the real client from a fake API on 127.0.0.1,
// over every rung of the ladder and across a restart. Each bad record is
// on the DLQ exactly once, with its raw bytes and metadata; each kind is
// logged once; the metric counts them; the windows are complete; and the
// newly mapped spellings (voicemail, busy) are published.
func TestDeadLetterUnknownAndUndecodable(t *testing.T) {
	api := newFakeAPI(t)
	at := func(d time.Duration) time.Time { return edgeT0.Add(d) }
	bad := []fakeRecord{
		{at(-3 * time.Minute), callLog("r1", at(-3*time.Minute), "ringing", "")},
		{at(-150 * time.Second), callLog("r2", at(-150*time.Second), "Ringing", "")},
		{at(-2 * time.Minute), callLog("b1", at(-2*time.Minute), "bogus", "")},
		{at(-100 * time.Second), `{"id":"u1","call_status":"completed","creation_time":null,"x":[1,2]}`},
	}
	good := []fakeRecord{
		{at(-40 * time.Minute), callLog("g1", at(-40*time.Minute), "completed", "")},
		{at(-4 * time.Minute), callLog("g2", at(-4*time.Minute), "voicemail", "")},
		{at(-90 * time.Second), callLog("g3", at(-90*time.Second), "busy", "")},
	}
	api.set(append(append([]fakeRecord{}, good...), bad...)...)
	client := newClient(t, api.srv.URL, "tok")
	clock := &fakeClock{now: edgeT0}
	bus := &busPublisher{}
	state := filepath.Join(t.TempDir(), "state.json")
	ep := newEdgeProducer(t, client, edgeConfig(), bus, clock, state)

	// Rung 1 re-reads the bad records; then the producer restarts and
	// rung 2 re-reads them.
	ep.pollUntil(t, edgeT0.Add(10*time.Minute))
	if err := ep.save(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := ep
	ep = newEdgeProducer(t, client, edgeConfig(), bus, clock, state)
	ep.pollUntil(t, edgeT0.Add(45*time.Minute))

	dlq := bus.on("dlq")
	if len(dlq) != len(bad) {
		for _, m := range dlq {
			t.Logf("DLQ: %s (%s)", m.Payload, m.Metadata[schemas.DLQReasonMetadata])
		}
		t.Fatalf("%d records on the DLQ, want each of the %d bad ones once", len(dlq), len(bad))
	}
	byRaw := map[string]bool{}
	for _, m := range dlq {
		byRaw[string(m.Payload)] = true
		sum := sha256.Sum256(m.Payload)
		for k, want := range map[string]string{
			schemas.KeyMetadata: "acme", schemas.DLQHandlerMetadata: schemas.HandlerProducer, schemas.DLQOrgMetadata: "acme",
			DLQStoredMetadata: "whole", DLQRawSHA256Metadata: hex.EncodeToString(sum[:]), DLQRawSizeMetadata: strconv.Itoa(len(m.Payload)),
		} {
			if m.Metadata[k] != want {
				t.Errorf("DLQ record %s: %s = %q, want %q", m.Payload, k, m.Metadata[k], want)
			}
		}
		if _, err := time.Parse(time.RFC3339Nano, m.Metadata[schemas.DLQTimeMetadata]); err != nil {
			t.Errorf("DLQ record %s: time %q: %v", m.Payload, m.Metadata[schemas.DLQTimeMetadata], err)
		}
		reason := m.Metadata[schemas.DLQReasonMetadata]
		switch m.Metadata[DLQKindMetadata] {
		case kindUnknownStatus:
			if !strings.Contains(reason, "unknown call_status") {
				t.Errorf("reason %q", reason)
			}
		case kindUndecodable:
			if !strings.Contains(reason, "creation_time") {
				t.Errorf("reason %q", reason)
			}
		default:
			t.Errorf("DLQ record %s of kind %q", m.Payload, m.Metadata[DLQKindMetadata])
		}
	}
	for _, b := range bad {
		if !byRaw[b.raw] {
			t.Errorf("bad record %s is not on the DLQ byte for byte", b.raw)
		}
	}
	events := bus.events(t, "calls")
	published := map[string]string{}
	for _, e := range events {
		published[e.CallKey] = e.CallStatus
	}
	if len(events) != len(good) || published["g2"] != unpod.StatusMissed || published["g3"] != unpod.StatusMissed {
		t.Errorf("published %v, want g1, and g2 (voicemail) and g3 (busy) as missed", published)
	}
	logs := first.logs.String() + ep.logs.String()
	if n := strings.Count(logs, "API record dead-lettered"); n != 3 {
		t.Errorf("%d dead-letter log lines, want one per kind (ringing, bogus, undecodable):\n%s", n, logs)
	}
	if got := metricValue(t, first.reg, "callstream_producer_dead_lettered_total", "acme", kindUnknownStatus); got != 3 {
		t.Errorf("dead_lettered_total{unknown_status} = %v, want 3", got)
	}
	if got := metricValue(t, first.reg, "callstream_producer_dead_lettered_total", "acme", kindUndecodable); got != 1 {
		t.Errorf("dead_lettered_total{undecodable} = %v, want 1", got)
	}
	if n := first.windowsNotComplete(t) + ep.windowsNotComplete(t); n != 0 {
		t.Errorf("%v windows re-read or inconsistent: records on the DLQ must count as read", n)
	}
}

// TestReplayDeadLetters is the hook for replaying the producer's dead
// letters: once unpod.status_map maps the spellings, Replay publishes each
// through the gate, once; a record still undecodable stays an error.
func TestReplayDeadLetters(t *testing.T) {
	api := newFakeAPI(t)
	r1 := callLog("r1", edgeT0.Add(-3*time.Minute), "ringing", "")
	undecodable := `{"id":"u1","call_status":"completed","creation_time":null}`
	api.set(fakeRecord{edgeT0.Add(-3 * time.Minute), r1}, fakeRecord{edgeT0.Add(-2 * time.Minute), undecodable})
	clock := &fakeClock{now: edgeT0}
	bus := &busPublisher{}
	state := filepath.Join(t.TempDir(), "state.json")
	ep := newEdgeProducer(t, newClient(t, api.srv.URL, "tok"), edgeConfig(), bus, clock, state)
	ep.pollUntil(t, edgeT0.Add(time.Minute))
	if err := ep.save(context.Background()); err != nil {
		t.Fatal(err)
	}
	dlq := bus.on("dlq")
	if len(dlq) != 2 || len(bus.on("calls")) != 0 {
		t.Fatalf("%d dead letters, %d events; want 2 and 0", len(dlq), len(bus.on("calls")))
	}

	// Not mapped yet: an error, nothing published or dead-lettered.
	if _, err := ep.Replay(context.Background(), "acme", []byte(r1)); !errors.Is(err, unpod.ErrUnknownStatus) {
		t.Fatalf("replay before the mapping: %v, want ErrUnknownStatus", err)
	}
	ucfg := unpod.Config{BaseURL: api.srv.URL, Token: "tok", RateLimit: -1, StatusMap: unpod.StatusMap{"ringing=missed"}}
	client, err := unpod.New(ucfg)
	if err != nil {
		t.Fatal(err)
	}
	ep2 := newEdgeProducer(t, client, edgeConfig(), bus, clock, state)
	for _, m := range dlq {
		res, err := ep2.Replay(context.Background(), m.Metadata[schemas.DLQOrgMetadata], m.Payload)
		switch string(m.Payload) {
		case r1:
			if err != nil || !res.Published || res.Revision != 1 || res.Event.CallStatus != unpod.StatusMissed {
				t.Fatalf("replay of %s: %+v, %v", m.Payload, res, err)
			}
			if again, err := ep2.Replay(context.Background(), "acme", m.Payload); err != nil || again.Published {
				t.Fatalf("second replay: %+v, %v; want a duplicate", again, err)
			}
		case undecodable:
			if err == nil || res.Published {
				t.Fatalf("replay of an undecodable record: %+v, %v", res, err)
			}
		}
	}
	events := bus.events(t, "calls")
	if len(events) != 1 || events[0].CallKey != "r1" || len(bus.on("dlq")) != 2 {
		t.Fatalf("events %+v, %d dead letters; want r1 once and no new dead letter", events, len(bus.on("dlq")))
	}
	// The next rung reads r1 again: now a duplicate of what Replay published.
	ep2.pollUntil(t, edgeT0.Add(10*time.Minute))
	if n := len(bus.on("calls")); n != 1 {
		t.Fatalf("%d events after the rung re-read r1, want 1", n)
	}
	old := callLog("r0", edgeT0.Add(-3*time.Hour), "ringing", "")
	if _, err := ep2.Replay(context.Background(), "acme", []byte(old)); !errors.Is(err, ErrBeyondHorizon) {
		t.Fatalf("replay of a record older than the horizon: %v", err)
	}
}

// TestOutsideWindowDeadLettered serves, for windows that do not contain
// them, records created in year 0000, 9999, 1970 and three hours before,
// and one (1970 again) in every window the producer asks for: none is
// published, each is dead-lettered once, across every rung, 50 minutes of
// new windows and the evictions from the dedup memory between them.
func TestOutsideWindowDeadLettered(t *testing.T) {
	api := newFakeAPI(t)
	odd := []fakeRecord{
		{edgeT0.Add(-3 * time.Minute), `{"id":"y0","call_status":"completed","creation_time":"0000-01-01T00:00:00Z"}`},
		{edgeT0.Add(-150 * time.Second), `{"id":"y9","call_status":"completed","creation_time":"9999-12-31T23:59:59Z"}`},
		{edgeT0.Add(-2 * time.Minute), `{"id":"y70","call_status":"completed","creation_time":"1970-01-01T00:00:00Z"}`},
		{edgeT0.Add(-100 * time.Second), callLog("old", edgeT0.Add(-3*time.Hour), "completed", "")},
	}
	everywhere := `{"id":"everywhere","call_status":"missed","creation_time":"1970-01-01T00:00:01Z"}`
	api.everywhere = []string{everywhere}
	api.set(append([]fakeRecord{{edgeT0.Add(-4 * time.Minute), callLog("g", edgeT0.Add(-4*time.Minute), "completed", "")}}, odd...)...)
	clock := &fakeClock{now: edgeT0}
	bus := &busPublisher{}
	ep := newEdgeProducer(t, newClient(t, api.srv.URL, "tok"), edgeConfig(), bus, clock, filepath.Join(t.TempDir(), "s.json"))
	ep.pollUntil(t, edgeT0.Add(45*time.Minute))
	ep.evict()
	ep.pollUntil(t, edgeT0.Add(50*time.Minute))

	events := bus.events(t, "calls")
	if len(events) != 1 || events[0].CallKey != "g" {
		t.Fatalf("published %d events %+v, want only g", len(events), events)
	}
	dlq := bus.on("dlq")
	seen := map[string]int{}
	for _, m := range dlq {
		seen[string(m.Payload)]++
		if m.Metadata[DLQKindMetadata] != kindOutsideWindow || !strings.Contains(m.Metadata[schemas.DLQReasonMetadata], "outside the window") {
			t.Errorf("DLQ record %s: kind %q reason %q", m.Payload, m.Metadata[DLQKindMetadata], m.Metadata[schemas.DLQReasonMetadata])
		}
	}
	for _, raw := range append(raws(odd), everywhere) {
		if seen[raw] != 1 {
			t.Errorf("%s dead-lettered %d times, want once", raw, seen[raw])
		}
	}
	if len(dlq) != len(odd)+1 {
		t.Errorf("%d dead letters, want %d", len(dlq), len(odd)+1)
	}
}

func raws(recs []fakeRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.raw
	}
	return out
}
