package producer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

// orderedPublisher records payloads in the order Publish was called.
type orderedPublisher struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func (o *orderedPublisher) Publish(_ string, msgs ...*message.Message) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msgs = append(o.msgs, msgs...)
	return nil
}

func (o *orderedPublisher) Close() error { return nil }

// TestWindowPublishedOldestFirst: the API lists newest first, but a window
// spanning many pages is published in creation_time order, so consumers on
// event time (alerting) see a catch-up in order instead of as late events.
func TestWindowPublishedOldestFirst(t *testing.T) {
	t.Parallel()
	origin := time.Now().UTC()
	clock := NewSimClock(1, origin)
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Clock = []string{"acme"}, "tok", clock.Now
	sc.Start = origin.Add(-40 * time.Minute)
	sc.CallsPerMinute, sc.DailyShape, sc.Incidents = 60, false, nil
	sc.LateRecords, sc.Updates, sc.PageShifts, sc.InvalidRecords = 0, 0, 0, 0
	_, url := startSim(t, sc)

	pub := &orderedPublisher{}
	cfg := DefaultConfig()
	cfg.SimClock, cfg.Lookback, cfg.PageSize = clock.String(), 30*time.Minute, 200
	cfg.RescanAges = []time.Duration{0}
	p, err := New(cfg, Deps{Source: newClient(t, url, "tok"), Publisher: pub, Topic: "calls", DLQTopic: "dlq", Store: NewFileStore(t.TempDir() + "/s.json")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.msgs) < 1000 {
		t.Fatalf("published %d events, want a catch-up of several pages (>= 1000)", len(pub.msgs))
	}
	var prev time.Time
	for i, m := range pub.msgs {
		e, err := v.DecodeCall(m.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if e.CreationTime.Before(prev) {
			t.Fatalf("event %d of %d (created %s) published after one created %s: not oldest first",
				i, len(pub.msgs), e.CreationTime.Format(time.RFC3339Nano), prev.Format(time.RFC3339Nano))
		}
		prev = e.CreationTime
	}
}
