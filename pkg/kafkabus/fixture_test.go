package kafkabus_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// fixture is one topic on the real broker plus the settings to reach it.
type fixture struct {
	t       *testing.T
	brokers []string
	topic   string
	group   string

	adminOnce   sync.Once
	adminClient *kafka.Client
}

func newFixture(t *testing.T, partitions int) *fixture {
	t.Helper()
	f := &fixture{t: t, brokers: testenv.Kafka(t), topic: testenv.Topic(t, "t")}
	f.group = f.topic + ".group"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := kafkabus.DefaultConfig()
	cfg.Brokers = f.brokers
	if err := kafkabus.EnsureTopic(ctx, cfg, kafkabus.TopicSpec{Name: f.topic, Partitions: partitions, ReplicationFactor: 1}); err != nil {
		t.Fatalf("EnsureTopic: %v", err)
	}
	deleteTopicsAfter(t, f.brokers, f.topic)
	return f
}

// deleteTopicsAfter deletes, when the test ends, every topic whose name
// starts with prefix: the broker is shared, and thousands of leftover test
// topics make every client's metadata requests slow.
func deleteTopicsAfter(t *testing.T, brokers []string, prefix string) {
	t.Cleanup(func() {
		cfg := kafkabus.DefaultConfig()
		cfg.Brokers = brokers
		client, err := cfg.Client()
		if err != nil {
			return
		}
		defer client.Transport.(*kafka.Transport).CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
		if err != nil {
			t.Logf("cleanup: list topics: %v", err)
			return
		}
		var names []string
		for _, tp := range md.Topics {
			if strings.HasPrefix(tp.Name, prefix) {
				names = append(names, tp.Name)
			}
		}
		if len(names) == 0 {
			return
		}
		if _, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names}); err != nil {
			t.Logf("cleanup: delete %d topics: %v", len(names), err)
		}
	})
}

func (f *fixture) cfg() kafkabus.Config {
	c := kafkabus.DefaultConfig()
	c.Brokers = f.brokers
	return c
}

func (f *fixture) publisher() *kafkabus.Publisher {
	f.t.Helper()
	pc := kafkabus.DefaultPublisherConfig()
	pc.Config = f.cfg()
	p, err := kafkabus.NewPublisher(pc, testLogger())
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = p.Close() })
	return p
}

func (f *fixture) subscriber(maxInFlight int) *kafkabus.Subscriber {
	f.t.Helper()
	sc := kafkabus.DefaultSubscriberConfig()
	sc.Config = f.cfg()
	sc.ConsumerGroup = f.group
	sc.MaxInFlight = maxInFlight
	sc.NackResendSleep = 20 * time.Millisecond
	sc.HeartbeatInterval = 250 * time.Millisecond
	sc.SessionTimeout = 6 * time.Second
	sc.RebalanceTimeout = 5 * time.Second
	s, err := kafkabus.NewSubscriber(sc, testLogger())
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = s.Close() })
	return s
}

// publishN publishes n messages with payload "0".."n-1", keyed by key(i)
// when key is not nil, in one Publish call.
func (f *fixture) publishN(p *kafkabus.Publisher, n int, key func(i int) string) []*message.Message {
	f.t.Helper()
	msgs := make([]*message.Message, n)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte(strconv.Itoa(i)))
		if key != nil {
			msgs[i].Metadata.Set(schemas.KeyMetadata, key(i))
		}
	}
	if err := p.Publish(f.topic, msgs...); err != nil {
		f.t.Fatalf("Publish: %v", err)
	}
	return msgs
}

func (f *fixture) subscribe(s *kafkabus.Subscriber) <-chan *message.Message {
	f.t.Helper()
	ch, err := s.Subscribe(context.Background(), f.topic)
	if err != nil {
		f.t.Fatal(err)
	}
	return ch
}

func receive(t *testing.T, ch <-chan *message.Message, within time.Duration) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return m
	case <-time.After(within):
		t.Fatalf("no message within %s", within)
	}
	return nil
}

func expectNone(t *testing.T, ch <-chan *message.Message, within time.Duration) {
	t.Helper()
	select {
	case m, ok := <-ch:
		if ok {
			t.Fatalf("unexpected delivery of offset %s while the in-flight limit is reached", m.Metadata.Get(schemas.OffsetMetadata))
		}
	case <-time.After(within):
	}
}

func offsetOf(t *testing.T, m *message.Message) int64 {
	t.Helper()
	o, err := strconv.ParseInt(m.Metadata.Get(schemas.OffsetMetadata), 10, 64)
	if err != nil {
		t.Fatalf("offset metadata %q: %v", m.Metadata.Get(schemas.OffsetMetadata), err)
	}
	return o
}

// committed returns the group's committed offset per partition (-1: none).
func (f *fixture) committed(partitions int) map[int]int64 {
	f.t.Helper()
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	// The broker is shared and sometimes slow to accept: retry a while.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := f.admin().OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: f.group, Topics: map[string][]int{f.topic: ids}})
		cancel()
		if err == nil {
			out := map[int]int64{}
			for _, p := range res.Topics[f.topic] {
				out[p.Partition] = p.CommittedOffset
			}
			return out
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("OffsetFetch: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// admin returns the fixture's one admin client, whose metadata covers the
// fixture's topic only; it is closed when the test ends.
func (f *fixture) admin() *kafka.Client {
	f.adminOnce.Do(func() {
		tr, err := f.cfg().Transport()
		if err != nil {
			panic(err) // the config was validated by EnsureTopic already
		}
		tr.MetadataTopics = []string{f.topic}
		f.adminClient = &kafka.Client{Addr: kafka.TCP(f.brokers...), Transport: tr, Timeout: 10 * time.Second}
		f.t.Cleanup(tr.CloseIdleConnections)
	})
	return f.adminClient
}

// waitMembers waits until the group is stable with n members that each
// hold at least one partition.
func (f *fixture) waitMembers(n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := f.admin().DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{f.group}})
		cancel()
		if err == nil && len(res.Groups) == 1 && res.Groups[0].GroupState == "Stable" {
			holding := 0
			for _, m := range res.Groups[0].Members {
				for _, tp := range m.MemberAssignments.Topics {
					if len(tp.Partitions) > 0 {
						holding++
						break
					}
				}
			}
			if holding == n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("group %s did not settle with %d members holding partitions (last error %v)", f.group, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
