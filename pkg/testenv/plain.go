package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// PlainConsume is the baseline of the consumer benchmarks: plain kafka-go
// reading n records of topic in consumer group group (FetchMessage,
// CommitMessages every 500). It returns events/s from the first record to
// the last and this process's CPU µs per event over the same span.
func PlainConsume(t testing.TB, brokers []string, topic, group string, n int) (perSecond, cpuPerEvent float64) {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: group, Topic: topic,
		StartOffset: kafka.FirstOffset, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond, QueueCapacity: 1000})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var start time.Time
	var cpu0 time.Duration
	pending := make([]kafka.Message, 0, 500)
	for i := range n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("plain kafka-go read of %s: %v", topic, err)
		}
		if i == 0 {
			start, cpu0 = time.Now(), CPUTime()
		}
		pending = append(pending, m)
		if len(pending) == cap(pending) || i == n-1 {
			if err := r.CommitMessages(ctx, pending...); err != nil {
				t.Fatalf("plain kafka-go commit on %s: %v", topic, err)
			}
			pending = pending[:0]
		}
	}
	el := time.Since(start)
	return float64(n) / el.Seconds(), float64(CPUTime()-cpu0) / float64(time.Microsecond) / float64(n)
}
