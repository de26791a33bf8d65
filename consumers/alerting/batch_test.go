package alerting

import (
	"context"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// batchStream is four hours of three orgs with three incidents.
func batchStream() []schemas.CallEvent {
	return normal(4*time.Hour,
		incident{org: "acme", from: 90 * time.Minute, to: 100 * time.Minute, status: schemas.StatusMissed, share: 0.8},
		incident{org: "globex", from: 2 * time.Hour, to: 2*time.Hour + 4*time.Minute, status: schemas.StatusFailed, share: 0.5},
		incident{org: "initech", from: 3 * time.Hour, to: 3*time.Hour + 2*time.Minute, status: schemas.StatusFailed, share: 0.9},
	).generate()
}

// runBatches feeds stream to a fresh plug-in in batches of size (0: one
// Handle call per event) and returns what it published and how often it
// saved, at most once per call.
func runBatches(t *testing.T, stream []schemas.CallEvent, size int, positions, shuffle bool) ([]*message.Message, int) {
	t.Helper()
	state := &fileState{dir: t.TempDir()}
	pub := &memPublisher{}
	p, err := New(testConfig(""), consumers.Deps{Publisher: pub, Topics: consumers.NewTopics("test."), State: state})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deliveries := make([]consumers.Delivery, len(stream))
	for i := range stream {
		deliveries[i] = consumers.Delivery{Event: stream[i]}
		if positions {
			deliveries[i].Position, deliveries[i].HasPosition = schemas.Position{Topic: "calls", Offset: int64(i)}, true
		}
	}
	if size == 0 {
		for _, d := range deliveries {
			if err := p.Handle(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		return pub.msgs, state.saves
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for lo := 0; lo < len(deliveries); lo += size {
		batch := append([]consumers.Delivery(nil), deliveries[lo:min(lo+size, len(deliveries))]...)
		if shuffle {
			// The runtime gathers a batch from concurrent deliveries.
			rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		}
		before := state.saves
		if err := p.HandleBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if state.saves-before > 1 {
			t.Fatalf("one batch saved the state %d times", state.saves-before)
		}
	}
	return pub.msgs, state.saves
}

// TestHandleBatchEqualsHandle: the same stream handled one by one and in
// batches of any size publishes the same alert events, byte for byte. A
// batch without positions (the in-process bus, gathered in no order) is
// counted in creation order and gives the same alerts as the ordered
// stream. A batch saves the state once.
func TestHandleBatchEqualsHandle(t *testing.T) {
	stream := batchStream()
	want, saves := runBatches(t, stream, 0, true, false)
	if len(want) < 6 {
		t.Fatalf("one by one: %d alert events, want at least 6", len(want))
	}
	tests := []struct {
		name               string
		size               int
		positions, shuffle bool
	}{
		{"batches of 1", 1, true, false},
		{"batches of 7", 7, true, false},
		{"batches of 1000", 1000, true, false},
		{"batches of 1000 in no order, no positions", 1000, false, true},
		{"batches of 100 in no order, no positions", 100, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, batchSaves := runBatches(t, stream, tt.size, tt.positions, tt.shuffle)
			if len(got) != len(want) {
				t.Fatalf("%d alert events, one by one %d", len(got), len(want))
			}
			for i := range want {
				a, b := want[i], got[i]
				if tt.positions && (a.UUID != b.UUID || string(a.Payload) != string(b.Payload) || !reflect.DeepEqual(a.Metadata, b.Metadata)) {
					t.Fatalf("alert event %d differs:\n%s\n%s", i, a.Payload, b.Payload)
				}
				x, y := decodeAlert(t, a.Payload), decodeAlert(t, b.Payload)
				if x.AlertID != y.AlertID || x.State != y.State || !x.StartsAt.Equal(y.StartsAt) {
					t.Fatalf("alert event %d: %s %s, one by one %s %s", i, y.State, y.AlertID, x.State, x.AlertID)
				}
			}
			if tt.size == 1000 && batchSaves >= saves {
				t.Errorf("batches of 1000 saved %d times, one by one %d", batchSaves, saves)
			}
		})
	}
}

// TestOutcomeMetrics: each call event is counted under its outcome, and
// the watermark gauge reads in Unix seconds.
func TestOutcomeMetrics(t *testing.T) {
	p, err := New(testConfig(""), consumers.Deps{Publisher: &memPublisher{}, Topics: consumers.NewTopics("test."), State: &fileState{dir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	at := func(n int, d time.Duration) consumers.Delivery {
		ev := call(n, "o", 0, schemas.StatusCompleted)
		ev.CreationTime, ev.ObservedAt = now.Add(d), now.Add(d)
		return consumers.Delivery{Event: ev}
	}
	batch := []consumers.Delivery{at(1, -time.Hour), at(2, -time.Hour+time.Second), at(1, -time.Hour), at(3, -time.Hour+time.Minute),
		at(4, 24*time.Hour)}
	if err := p.HandleBatch(context.Background(), batch[:4]); err != nil {
		t.Fatal(err)
	}
	// After the watermark passed it: late.
	if err := p.HandleBatch(context.Background(), []consumers.Delivery{at(5, -2*time.Hour), batch[4]}); err != nil {
		t.Fatal(err)
	}
	for outcome, want := range map[string]float64{"counted": 3, "duplicate": 1, "late": 1, "future": 1} {
		if got := testutil.ToFloat64(p.metrics.events.WithLabelValues(outcome)); got != want {
			t.Errorf("%s: %v, want %v", outcome, got, want)
		}
	}
	// The watermark gauge is in Unix seconds.
	p.tick(context.Background())
	if got, want := testutil.ToFloat64(p.metrics.watermark), float64(p.eng.Watermark().Unix()); got != want || want < float64(now.Add(-2*time.Hour).Unix()) {
		t.Errorf("watermark gauge %v, want %v", got, want)
	}
}
