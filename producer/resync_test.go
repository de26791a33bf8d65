package producer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/unpodsim"
)

// halfFailing writes the first half of one batch, then reports failure:
// what a broker that acknowledged some partitions and not others does.
type halfFailing struct {
	message.Publisher
	armed bool
}

func (h *halfFailing) Publish(topic string, msgs ...*message.Message) error {
	if h.armed && len(msgs) > 1 {
		h.armed = false
		if err := h.Publisher.Publish(topic, msgs[:len(msgs)/2]...); err != nil {
			return err
		}
		return errors.New("injected: second half not acknowledged")
	}
	return h.Publisher.Publish(topic, msgs...)
}

// TestPartialPublishIsReadBack checks that after a batch failed half
// written, the producer learns the written half from the topic before
// publishing again, so the retry publishes each event once: after a clean
// poll, from the organization's latest sample, and on its very first poll,
// before any sample exists, from the start of the topic.
func TestPartialPublishIsReadBack(t *testing.T) {
	t.Parallel()
	for _, cleanFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "after a clean poll", false: "on the first poll"}[cleanFirst], func(t *testing.T) {
			t.Parallel()
			t0 := time.Now().UTC().Truncate(time.Minute)
			clock := &fakeClock{now: t0}
			sc := unpodsim.DefaultConfig()
			sc.Orgs, sc.Token, sc.Clock, sc.Start = []string{"acme"}, "tok", clock.Now, t0.Add(-30*time.Minute)
			sc.LateRecords, sc.Updates, sc.PageShifts = 0, 0, 0
			sim, url := startSim(t, sc)
			deps, kcfg := kafkaDeps(t, newClient(t, url, "tok"), nil)
			flaky := &halfFailing{Publisher: deps.Publisher}
			deps.Publisher, deps.Now = flaky, clock.Now
			cfg := DefaultConfig()
			cfg.Orgs, cfg.Lookback = []string{"acme"}, 30*time.Minute
			p, err := New(cfg, deps)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if cleanFirst {
				if err := p.pollOrg(ctx, "acme"); err != nil {
					t.Fatal(err) // a clean first poll, so that a sample exists
				}
				clock.Add(10 * time.Minute)
			}
			flaky.armed = true
			if err := p.pollOrg(ctx, "acme"); !errors.Is(err, errPublish) {
				t.Fatalf("poll with a half-written batch: %v, want a publish error", err)
			}
			if err := p.pollOrg(ctx, "acme"); err != nil {
				t.Fatal(err)
			}
			latest := checkStream(t, readTopic(t, kcfg, deps.Topic))
			cut := p.checkpoint("acme").Rungs[0].Frontier
			checkTruth(t, "acme", sim.GroundTruthWindow("acme", sc.Start, cut, clock.Now()), latest, sc.Start, cut)
		})
	}
}
