package kafkabus

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// memSource is an in-memory group source: it hands out records without
// end and counts commits. It isolates the cost kafkabus adds per message.
type memSource struct {
	next      atomic.Int64
	committed atomic.Int64
	value     []byte
	headers   []kafka.Header
}

func (m *memSource) FetchMessage(ctx context.Context) (kafka.Message, error) {
	if err := ctx.Err(); err != nil {
		return kafka.Message{}, err
	}
	o := m.next.Add(1) - 1
	return kafka.Message{Topic: "bench", Partition: int(o % 4), Offset: o / 4, Value: m.value, Headers: m.headers, Time: time.Now()}, nil
}

func (m *memSource) commit(_ context.Context, msgs []kafka.Message) error {
	m.committed.Add(int64(len(msgs)))
	return nil
}

func (m *memSource) grouped() bool { return true }
func (m *memSource) Close() error  { return nil }

// BenchmarkDeliveryOverhead measures what a subscription adds per message
// on top of the Kafka client: unmarshal, metadata, delivery, ack handling
// and commit tracking, with a consumer that acks at once.
//
//	go test ./pkg/kafkabus -run '^$' -bench DeliveryOverhead -benchmem
func BenchmarkDeliveryOverhead(b *testing.B) {
	for _, inFlight := range []int{1, 256} {
		b.Run("max_in_flight="+strconv.Itoa(inFlight), func(b *testing.B) {
			cfg := DefaultSubscriberConfig()
			cfg.Brokers = []string{"127.0.0.1:9092"}
			cfg.MaxInFlight = inFlight
			cfg.CommitInterval = 100 * time.Millisecond
			s, err := NewSubscriber(cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			src := &memSource{
				value:   make([]byte, 1024),
				headers: []kafka.Header{{Key: UUIDHeader, Value: []byte("0190b6f4-7d6c-7d3e-9c1a-4f7e2a1b3c5d")}, {Key: "ce_id", Value: []byte("e")}},
			}
			sub := newSubscription(s, context.Background(), "bench", src)
			sub.loops.Add(1)
			go sub.run()
			b.SetBytes(1024)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				(<-sub.out).Ack()
			}
			b.StopTimer()
			if err := sub.close(); err != nil && !errors.Is(err, context.Canceled) {
				b.Fatal(err)
			}
		})
	}
}
