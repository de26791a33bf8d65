package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

func TestPauseReason(t *testing.T) {
	api := func(status int) error {
		return fmt.Errorf("producer: org acme window page 1: %w", &unpod.APIError{Status: status, Method: "GET", URL: "/x"})
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"400", api(400), reasonBadRequest},
		{"401", api(401), reasonUnauthorized},
		{"403", api(403), reasonForbidden},
		{"404", api(404), reasonNotFound},
		{"409 is refused like a 400", api(409), reasonBadRequest},
		{"429", api(429), reasonRateLimited},
		{"500", api(500), reasonServerError},
		{"503", api(503), reasonServerError},
		{"302 is the server's doing", api(302), reasonServerError},
		{"malformed body", fmt.Errorf("page 2: %w", unpod.ErrMalformed), reasonServerError},
		{"connection refused", fmt.Errorf("get: %w", &net.OpError{Op: "dial", Err: errors.New("connection refused")}), reasonNetwork},
		{"timeout", fmt.Errorf("get: %w", context.DeadlineExceeded), reasonNetwork},
		{"bus", fmt.Errorf("%w: publish 3 events: broker down", errPublish), reasonPublish},
	}
	for _, tt := range tests {
		if got := pauseReason(tt.err); got != tt.want {
			t.Errorf("%s: pauseReason(%v) = %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}

// scriptedSource serves fixed records by creation time, or fails with the
// error the test sets.
type scriptedSource struct {
	mu   sync.Mutex
	err  error
	recs []unpod.Record
}

func (s *scriptedSource) fail(err error) { s.mu.Lock(); s.err = err; s.mu.Unlock() }

func (s *scriptedSource) CallLogs(_ context.Context, q unpod.Query) (*unpod.Page, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	pg := &unpod.Page{}
	for _, r := range s.recs {
		if !r.CreationTime.Before(q.Start) && r.CreationTime.Before(q.End) {
			pg.Records = append(pg.Records, r)
		}
	}
	pg.Count = len(pg.Records)
	if q.Page > 1 {
		pg.Records = nil
	}
	return pg, nil
}

func (s *scriptedSource) Organizations(context.Context) ([]unpod.Organization, error) {
	return nil, errors.New("scriptedSource: orgs are configured")
}

// failingPublisher refuses every publish while fail is set.
type failingPublisher struct {
	mu   sync.Mutex
	fail bool
}

func (f *failingPublisher) set(v bool) { f.mu.Lock(); f.fail = v; f.mu.Unlock() }

func (f *failingPublisher) Publish(string, ...*message.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("broker unreachable")
	}
	return nil
}
func (f *failingPublisher) Close() error { return nil }

// series returns the value of every series of name on reg, keyed by the
// values of labels, in order, joined by "/".
func series(t *testing.T, reg *prometheus.Registry, name string, labels ...string) map[string]float64 {
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
		for _, m := range mf.Metric {
			lv := map[string]string{}
			for _, l := range m.Label {
				lv[l.GetName()] = l.GetValue()
			}
			key := ""
			for i, l := range labels {
				if i > 0 {
					key += "/"
				}
				key += lv[l]
			}
			out[key] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return 0
}

// TestOrgStatusMetrics checks the series the status page reads: the reason
// of a pause (only the current one, gone once the org polls again), the
// time of the last poll by outcome, and published events by call status.
func TestOrgStatusMetrics(t *testing.T) {
	now := time.Now().UTC()
	var recs []unpod.Record
	statuses := []string{schemas.StatusCompleted, schemas.StatusCompleted, schemas.StatusMissed, schemas.StatusFailed, schemas.StatusCompleted}
	for i, st := range statuses {
		created := now.Add(-time.Duration(i+2) * time.Minute)
		recs = append(recs, unpod.Record{ID: fmt.Sprintf("c%d", i), SourceNumber: "+1", DestinationNumber: "+2",
			CallType: schemas.CallInbound, CallStatus: st, RawStatus: st, CreationTime: created, EndReason: "hangup",
			Raw: json.RawMessage(fmt.Sprintf(`{"id":"c%d"}`, i))})
	}
	src := &scriptedSource{recs: recs}
	src.fail(fmt.Errorf("get: %w", &unpod.APIError{Status: 401, Method: "GET", URL: "/api"}))
	pub := &failingPublisher{}
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.Orgs, cfg.Lookback, cfg.SettleLag = []string{"acme"}, 10*time.Minute, time.Second
	cfg.PollInterval, cfg.OrgBackoff, cfg.OrgBackoffMax = 20*time.Millisecond, 10*time.Millisecond, 20*time.Millisecond
	p, err := New(cfg, Deps{Source: src, Publisher: pub, Topic: "calls", DLQTopic: "dlq", Store: NewFileStore(filepath.Join(t.TempDir(), "s.json")), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; pause reasons %v, last polls %v", what,
					series(t, reg, "callstream_producer_org_pause_reason", "org", "reason"),
					series(t, reg, "callstream_producer_last_poll_timestamp_seconds", "org", "outcome"))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	onlyReason := func(want string) func() bool {
		return func() bool {
			r := series(t, reg, "callstream_producer_org_pause_reason", "org", "reason")
			return len(r) == 1 && r["acme/"+want] == 1
		}
	}
	waitFor("the 401 pause", onlyReason(reasonUnauthorized))
	if ts := series(t, reg, "callstream_producer_last_poll_timestamp_seconds", "org", "outcome")["acme/unauthorized"]; ts < float64(now.Unix()) {
		t.Errorf("last poll with outcome unauthorized at %v, want a Unix time after the test started (%d)", ts, now.Unix())
	}
	src.fail(fmt.Errorf("get: %w", &unpod.APIError{Status: 503, Method: "GET", URL: "/api"}))
	waitFor("the reason to change to server_error, alone", onlyReason(reasonServerError))

	src.fail(nil)
	pub.set(true)
	waitFor("the publish pause", onlyReason(reasonPublish))

	pub.set(false)
	waitFor("the reason to go once the org polls again", func() bool {
		return len(series(t, reg, "callstream_producer_org_pause_reason", "org", "reason")) == 0 &&
			series(t, reg, "callstream_producer_last_poll_timestamp_seconds", "org", "outcome")["acme/ok"] > 0
	})
	waitFor("every record published", func() bool { return p.Stats().Published == int64(len(recs)) })
	want := map[string]float64{"acme/completed": 3, "acme/missed": 1, "acme/failed": 1}
	got := series(t, reg, "callstream_producer_calls_total", "org", "status")
	for k, v := range want {
		if got[k] != v {
			t.Errorf("callstream_producer_calls_total{%s} = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if paused := series(t, reg, "callstream_producer_org_paused", "org")["acme"]; paused != 0 {
		t.Errorf("callstream_producer_org_paused = %v after recovery", paused)
	}
}
