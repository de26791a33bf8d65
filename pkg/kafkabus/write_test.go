package kafkabus_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
)

// faultyProduce is a transport whose first produce requests fail: with
// landed set they reach the broker and the answer is lost (a connection
// that breaks while the acknowledgement is on its way), else the broker
// never sees them and the error is the broker's refusal.
type faultyProduce struct {
	kafka.RoundTripper
	landed bool
	delay  time.Duration // instead of failing, hold the request this long (a paused process)
	faults atomic.Int32  // produce requests still to fail
}

func (f *faultyProduce) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	if _, ok := req.(*produceAPI.Request); !ok || f.faults.Add(-1) < 0 {
		return f.RoundTripper.RoundTrip(ctx, addr, req)
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
		return f.RoundTripper.RoundTrip(ctx, addr, req)
	}
	if !f.landed {
		return nil, kafka.NotLeaderForPartition
	}
	if _, err := f.RoundTripper.RoundTrip(ctx, addr, req); err != nil {
		return nil, err
	}
	return nil, io.ErrUnexpectedEOF
}

// TestPublishRetriesOnlyRefusals: a write whose acknowledgement was lost is
// not written again (kafka-go's own retry would, and Publish would report
// success over a duplicate), while a write the broker refused is retried.
func TestPublishRetriesOnlyRefusals(t *testing.T) {
	brokers := testenv.Kafka(t)
	cfg := kafkabus.DefaultConfig()
	cfg.Brokers = brokers
	tests := []struct {
		name    string
		landed  bool
		wantErr bool
	}{
		{"acknowledgement lost after the append", true, true},
		{"refused by the broker", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			topic, p := onePartitionPublisher(ctx, t, cfg, "retry", nil)
			// A first publish fills the writer's metadata, so that the
			// fault hits the produce request of the second.
			if err := p.Publish(topic, message.NewMessage("warm-up", []byte("0"))); err != nil {
				t.Fatal(err)
			}
			fault := &faultyProduce{landed: tc.landed}
			fault.faults.Store(1)
			p.WrapTransport(func(rt kafka.RoundTripper) kafka.RoundTripper { fault.RoundTripper = rt; return fault })
			perr := p.Publish(topic, message.NewMessage("once", []byte("1")))
			copies := 0
			if err := kafkabus.ReadRange(ctx, cfg, topic, nil, func(m kafka.Message) error {
				if string(m.Value) == "1" {
					copies++
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if copies != 1 || (perr != nil) != tc.wantErr {
				t.Fatalf("the message is on the topic %d times, want once; Publish: err = %v, want an error: %v", copies, perr, tc.wantErr)
			}
		})
	}
}

// TestLateWriteRefused: on a topic with message.timestamp.before.max.ms (set
// by SetTopicConfigs, as `callstream produce` does to fence a paused owner),
// a write that reaches the broker later than that after Publish was called
// is refused and lands nowhere, while a timely one lands.
func TestLateWriteRefused(t *testing.T) {
	brokers := testenv.Kafka(t)
	cfg := kafkabus.DefaultConfig()
	cfg.Brokers = brokers
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic, p := onePartitionPublisher(ctx, t, cfg, "fenced", map[string]string{"message.timestamp.before.max.ms": "1000"})
	if err := p.Publish(topic, message.NewMessage("timely", []byte("timely"))); err != nil {
		t.Fatalf("a timely write: %v", err)
	}
	fault := &faultyProduce{delay: 2500 * time.Millisecond}
	fault.faults.Store(1)
	p.WrapTransport(func(rt kafka.RoundTripper) kafka.RoundTripper { fault.RoundTripper = rt; return fault })
	perr := p.Publish(topic, message.NewMessage("late", []byte("late")))
	var got []string
	if err := kafkabus.ReadRange(ctx, cfg, topic, nil, func(m kafka.Message) error {
		got = append(got, string(m.Value))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if perr == nil || len(got) != 1 || got[0] != "timely" {
		t.Fatalf("a write 2.5 s late on a topic refusing 1 s: Publish err = %v, topic holds %q; want an error and only the timely record", perr, got)
	}
	if !errors.Is(perr, kafkabus.ErrLate) {
		t.Errorf("Publish err = %v, want it to wrap kafkabus.ErrLate", perr)
	}
}

// onePartitionPublisher makes a topic of one partition, with configs set
// after creation (through SetTopicConfigs, as `callstream produce` sets
// them), and a publisher closed with the test.
func onePartitionPublisher(ctx context.Context, t *testing.T, cfg kafkabus.Config, name string, configs map[string]string) (string, *kafkabus.Publisher) {
	t.Helper()
	topic := testenv.Topic(t, name)
	if err := kafkabus.EnsureTopic(ctx, cfg, kafkabus.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	if len(configs) > 0 {
		if err := kafkabus.SetTopicConfigs(ctx, cfg, topic, configs); err != nil {
			t.Fatal(err)
		}
	}
	pc := kafkabus.DefaultPublisherConfig()
	pc.Config = cfg
	p, err := kafkabus.NewPublisher(pc, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return topic, p
}
