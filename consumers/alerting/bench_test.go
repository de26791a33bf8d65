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

// benchRules are the rule sets benchmarked: the defaults (four rules that
// count calls, and org-paused), and the two rules that were the defaults
// before the absence and drop rules, to compare with older figures.
var benchRules = []struct {
	name  string
	rules func() []Rule
}{
	{"rules=default", DefaultRules},
	{"rules=two", func() []Rule { return DefaultRules()[:2] }},
}

func benchConfig(rules []Rule) Config {
	cfg := replayConfig()
	cfg.Rules = rules
	cfg.Notifiers.Log.Enabled = false
	return cfg
}

// warmUp is how many events run before timing: past the baseline window,
// so every group is live.
const warmUp = 800_000

// BenchmarkEvaluate measures events/s through the engine with 1,000
// groups, evaluation steps included.
func BenchmarkEvaluate(b *testing.B) {
	for _, rs := range benchRules {
		b.Run(rs.name, func(b *testing.B) {
			s := newBenchStream()
			e := newEngine(benchConfig(rs.rules()))
			for i := range warmUp {
				e.Observe("", s.at(i), wall)
			}
			e.TakeNotices()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				e.Observe("", s.at(warmUp+i), wall)
			}
			b.StopTimer()
			e.TakeNotices()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkHandle is BenchmarkEvaluate through the plug-in's Handle (lock,
// metrics, outbox per event), without a publisher.
func BenchmarkHandle(b *testing.B) {
	for _, rs := range benchRules {
		b.Run(rs.name, func(b *testing.B) {
			s := newBenchStream()
			p, err := New(benchConfig(rs.rules()), consumers.Deps{Topics: consumers.NewTopics("bench.")})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for i := range warmUp {
				_ = p.Handle(ctx, consumers.Delivery{Event: *s.at(i)})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := p.Handle(ctx, consumers.Delivery{Event: *s.at(warmUp + i)}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkHandleBatch is BenchmarkHandle through HandleBatch, in batches
// of 1,000 deliveries with Kafka positions on one partition (one lock, one
// metrics update and one flush per batch). The batches are built before
// timing.
func BenchmarkHandleBatch(b *testing.B) {
	const size = 1000
	for _, rs := range benchRules {
		b.Run(rs.name, func(b *testing.B) {
			s := newBenchStream()
			p, err := New(benchConfig(rs.rules()), consumers.Deps{Topics: consumers.NewTopics("bench.")})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			batch := func(from, n int) []consumers.Delivery {
				out := make([]consumers.Delivery, n)
				for i := range out {
					// One partition, so the sources (1,000 orgs) are those
					// of BenchmarkHandle.
					out[i] = consumers.Delivery{Event: *s.at(from + i), HasPosition: true,
						Position: schemas.Position{Offset: int64(from + i)}}
				}
				return out
			}
			for i := 0; i < warmUp; i += size {
				_ = p.HandleBatch(ctx, batch(i, size))
			}
			batches := make([][]consumers.Delivery, 0, b.N/size+1)
			for i := 0; i < b.N; i += size {
				batches = append(batches, batch(warmUp+i, min(size, b.N-i)))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for _, bt := range batches {
				if err := p.HandleBatch(ctx, bt); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
