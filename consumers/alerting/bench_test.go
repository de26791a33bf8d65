package alerting

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// benchStream yields call events for 1,000 orgs (groups) at 200 calls per
// second of event time, 10% missed and 2% failed, slightly out of order.
type benchStream struct {
	orgs, keys []string
	ev         schemas.CallEvent
}

func newBenchStream() *benchStream {
	s := &benchStream{}
	for i := range 1000 {
		s.orgs = append(s.orgs, fmt.Sprintf("org-%04d", i))
	}
	for i := range 1 << 16 {
		s.keys = append(s.keys, fmt.Sprintf("call-%08d", i))
	}
	s.ev = schemas.CallEvent{EventID: "ev", Revision: 1, SourceNumber: "+911234567890", DestinationNumber: "+14155550000", EndReason: "x"}
	return s
}

func (s *benchStream) at(i int) *schemas.CallEvent {
	ev := &s.ev
	// 5 ms apart, every 7th call 3 s late (within grace).
	t := time.Duration(i) * 5 * time.Millisecond
	if i%7 == 0 {
		t -= 3 * time.Second
	}
	ev.CreationTime = t0.Add(t)
	ev.Org = s.orgs[(i*7919)%len(s.orgs)]
	ev.CallKey = s.keys[i%len(s.keys)]
	ev.EventID = ev.CallKey
	ev.CallType = schemas.CallOutbound
	if i%5 < 3 {
		ev.CallType = schemas.CallInbound
	}
	switch {
	case i%50 == 0:
		ev.CallStatus = schemas.StatusFailed
	case i%10 == 1:
		ev.CallStatus = schemas.StatusMissed
	default:
		ev.CallStatus = schemas.StatusCompleted
	}
	return ev
}

// BenchmarkEvaluate measures events/s through the two default rules with
// 1,000 groups, evaluation steps included.
func BenchmarkEvaluate(b *testing.B) {
	s := newBenchStream()
	e := newEngine(DefaultConfig())
	// Warm up past the baseline window so every group is live.
	for i := range 800_000 {
		e.Observe("", s.at(i), wall)
	}
	e.TakeNotices()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e.Observe("", s.at(800_000+i), wall)
	}
	b.StopTimer()
	e.TakeNotices()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkHandle is BenchmarkEvaluate through the plug-in's Handle (lock,
// metrics, outbox), without a publisher.
func BenchmarkHandle(b *testing.B) {
	s := newBenchStream()
	cfg := DefaultConfig()
	cfg.Notifiers.Log.Enabled = false
	p, err := New(cfg, consumers.Deps{Topics: consumers.NewTopics("bench.")})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := range 800_000 {
		_ = p.Handle(ctx, consumers.Delivery{Event: *s.at(i)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := p.Handle(ctx, consumers.Delivery{Event: *s.at(800_000 + i)}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
