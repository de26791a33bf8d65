package producer

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/schemas"
)

// TestEmbeddedRestartKeepsDedup runs the producer as `callstream run` does:
// on watermill's GoChannel with a state file. A second producer started on
// the same file publishes only what the first did not.
func TestEmbeddedRestartKeepsDedup(t *testing.T) {
	t.Parallel()
	origin := time.Now().UTC()
	clock := NewSimClock(60, origin)
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Clock = []string{"acme", "globex"}, "tok", clock.Now
	sc.Start = origin.Add(-20 * time.Minute)
	_, url := startSim(t, sc)

	bus := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 100000}, watermill.NopLogger{})
	defer bus.Close()
	msgs, err := bus.Subscribe(context.Background(), "calls")
	if err != nil {
		t.Fatal(err)
	}
	var onBus int
	var busMu sync.Mutex
	go func() {
		for m := range msgs {
			busMu.Lock()
			onBus++
			busMu.Unlock()
			m.Ack()
		}
	}()

	state := filepath.Join(t.TempDir(), "producer.json")
	var mu sync.Mutex
	var events []schemas.CallEvent
	run := func(d time.Duration) Stats {
		cfg := DefaultConfig()
		cfg.SimClock, cfg.Lookback = clock.String(), 20*time.Minute
		cfg.RescanAges = []time.Duration{0, 2 * time.Minute, 10 * time.Minute}
		p, err := New(cfg, Deps{Source: newClient(t, url, "tok"), Publisher: bus, Topic: "calls", DLQTopic: "dlq", Store: NewFileStore(state),
			OnEvent: func(e *schemas.CallEvent) { mu.Lock(); events = append(events, *e); mu.Unlock() }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		if err := p.Run(ctx); err != nil {
			t.Fatal(err)
		}
		return p.Stats()
	}
	first := run(3 * time.Second)
	second := run(3 * time.Second)
	if first.Published == 0 || second.Duplicates == 0 {
		t.Fatalf("first run published %d, second dropped %d duplicates: the state file did not carry the memory", first.Published, second.Duplicates)
	}
	if second.Remembered < int(first.Published)/2 {
		t.Errorf("second run remembers %d calls after the first published %d", second.Remembered, first.Published)
	}
	var stream []topicEvent
	for _, e := range events {
		stream = append(stream, topicEvent{CallEvent: e, Key: e.CallKey, Headers: map[string]string{
			schemas.HeaderSpecVersion: schemas.SpecVersion, schemas.HeaderID: e.EventID, schemas.HeaderSource: schemas.Source(e.Org),
			schemas.HeaderType: e.Type(), schemas.HeaderSubject: e.CallKey, schemas.HeaderContentType: schemas.JSONContentType,
			schemas.HeaderTime: e.ObservedAt.Format(time.RFC3339Nano)}})
	}
	checkStream(t, stream)
	time.Sleep(100 * time.Millisecond)
	busMu.Lock()
	defer busMu.Unlock()
	if onBus != len(events) {
		t.Errorf("%d messages on the bus, %d events acknowledged", onBus, len(events))
	}
	t.Logf("first run %+v; second run %+v", first, second)
}
