package kafkabus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// A message over the topic's max.message.bytes (refused by the broker) or
// over the publisher's batch_bytes (refused before sending) is reported as
// schemas.ErrTooLarge, which the consumers' DLQ path records instead of
// retrying forever; a message that fits is published as usual.
func TestPublishTooLarge(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := testenv.Topic(t, "small")
	cfg := kafkabus.DefaultConfig()
	cfg.Brokers = brokers
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkabus.EnsureTopic(ctx, cfg, kafkabus.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1,
		Configs: map[string]string{"max.message.bytes": "4096"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		batchBytes int64
		payload    int
		tooLarge   bool
	}{
		{"fits", 1 << 20, 1000, false},
		{"over the topic's max.message.bytes", 1 << 20, 64 << 10, true},
		{"over the publisher's batch_bytes", 8 << 10, 16 << 10, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc := kafkabus.DefaultPublisherConfig()
			pc.Config = cfg
			pc.BatchBytes = tc.batchBytes
			p, err := kafkabus.NewPublisher(pc, watermill.NopLogger{})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			msg := message.NewMessage(watermill.NewUUID(), []byte(strings.Repeat("x", tc.payload)))
			err = p.Publish(topic, msg)
			if got := errors.Is(err, schemas.ErrTooLarge); got != tc.tooLarge {
				t.Fatalf("Publish of %d bytes: err = %v; ErrTooLarge %v, want %v", tc.payload, err, got, tc.tooLarge)
			}
		})
	}
}
