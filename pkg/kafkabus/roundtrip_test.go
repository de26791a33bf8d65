package kafkabus_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// TestHeadersAndKeyRoundTrip checks the record on the wire (key, headers)
// and the metadata a subscriber gets back.
func TestHeadersAndKeyRoundTrip(t *testing.T) {
	f := newFixture(t, 3)
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"call_key":"c-42"}`))
	msg.Metadata.Set(schemas.KeyMetadata, "c-42")
	msg.Metadata.Set("ce_id", "evt-1")
	msg.Metadata.Set("ce_type", "callstream.call.created.v1")
	msg.Metadata.Set("content-type", "application/json")
	before := time.Now().Add(-time.Second)
	if err := f.publisher().Publish(f.topic, msg); err != nil {
		t.Fatal(err)
	}

	raw := kafka.NewReader(kafka.ReaderConfig{Brokers: f.brokers, Topic: f.topic, GroupID: f.group + ".raw", StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec, err := raw.FetchMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(rec.Key) != "c-42" {
		t.Fatalf("record key %q", rec.Key)
	}
	headers := map[string]string{}
	for _, h := range rec.Headers {
		headers[h.Key] = string(h.Value)
	}
	if _, ok := headers[schemas.KeyMetadata]; ok {
		t.Fatal("partition key also sent as a header")
	}
	if headers["ce_id"] != "evt-1" || headers["content-type"] != "application/json" || headers[kafkabus.UUIDHeader] != msg.UUID {
		t.Fatalf("headers on the wire: %v", headers)
	}

	got := receive(t, f.subscribe(f.subscriber(1)), 20*time.Second)
	defer got.Ack()
	if got.UUID != msg.UUID || string(got.Payload) != string(msg.Payload) {
		t.Fatalf("got %s %s", got.UUID, got.Payload)
	}
	want := map[string]string{
		schemas.KeyMetadata:       "c-42",
		"ce_id":                   "evt-1",
		"ce_type":                 "callstream.call.created.v1",
		"content-type":            "application/json",
		schemas.TopicMetadata:     f.topic,
		schemas.PartitionMetadata: strconv.Itoa(rec.Partition),
		schemas.OffsetMetadata:    strconv.FormatInt(rec.Offset, 10),
	}
	for k, v := range want {
		if got.Metadata.Get(k) != v {
			t.Errorf("metadata %s = %q, want %q", k, got.Metadata.Get(k), v)
		}
	}
	ts, err := time.Parse(time.RFC3339Nano, got.Metadata.Get(schemas.TimestampMetadata))
	if err != nil || ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("timestamp metadata %q (%v)", got.Metadata.Get(schemas.TimestampMetadata), err)
	}
}

// TestPublishToTopicCreatedElsewhere: a topic created by another client after
// the publisher cached its metadata is still published to.
func TestPublishToTopicCreatedElsewhere(t *testing.T) {
	f := newFixture(t, 1)
	pub := f.publisher()
	f.publishN(pub, 1, nil) // fills the publisher's metadata cache
	other := testenv.Topic(t, "late")
	deleteTopicsAfter(t, f.brokers, other)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkabus.EnsureTopic(ctx, f.cfg(), kafkabus.TopicSpec{Name: other, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(other, message.NewMessage(watermill.NewUUID(), []byte("x"))); err != nil {
		t.Fatalf("publish to a topic created elsewhere: %v", err)
	}
	if err := pub.Publish(testenv.Topic(t, "missing"), message.NewMessage(watermill.NewUUID(), []byte("x"))); err == nil {
		t.Fatal("publish to a missing topic succeeded without auto-creation")
	}
}

// TestInitialOffsetLastWithoutGroup: a subscriber without a group and with
// initial offset "last" sees only what is published after it started.
func TestInitialOffsetLastWithoutGroup(t *testing.T) {
	f := newFixture(t, 2)
	pub := f.publisher()
	f.publishN(pub, 5, nil)
	sc := kafkabus.DefaultSubscriberConfig()
	sc.Config = f.cfg()
	sc.InitialOffset = kafkabus.OffsetLast
	s, err := kafkabus.NewSubscriber(sc, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ch := f.subscribe(s)
	after := message.NewMessage(watermill.NewUUID(), []byte("after"))
	if err := pub.Publish(f.topic, after); err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch, 20*time.Second)
	if m.UUID != after.UUID {
		t.Fatalf("got %q, want only the message published after subscribing", m.Payload)
	}
	m.Ack()
}

type failingUnmarshaler struct{}

func (failingUnmarshaler) Unmarshal(kafka.Message) (*message.Message, error) {
	return nil, errors.New("bad schema")
}

// TestUnmarshalErrorDeliversRawRecord: a record the Unmarshaler rejects is
// neither dropped nor retried forever; it arrives raw, marked with the error.
func TestUnmarshalErrorDeliversRawRecord(t *testing.T) {
	f := newFixture(t, 1)
	sent := f.publishN(f.publisher(), 1, nil)
	sc := kafkabus.DefaultSubscriberConfig()
	sc.Config = f.cfg()
	sc.ConsumerGroup = f.group
	sc.Unmarshaler = failingUnmarshaler{}
	s, err := kafkabus.NewSubscriber(sc, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := receive(t, f.subscribe(s), 20*time.Second)
	defer m.Ack()
	if m.UUID != sent[0].UUID || string(m.Payload) != "0" || m.Metadata.Get(schemas.UnmarshalErrorMetadata) != "bad schema" {
		t.Fatalf("got %s %q metadata %v", m.UUID, m.Payload, m.Metadata)
	}
}

// TestMetricsCount: publish, consume and commit counters move, and two
// clients can share one registry.
func TestMetricsCount(t *testing.T) {
	f := newFixture(t, 1)
	reg := prometheus.NewRegistry()
	var pubs []*kafkabus.Publisher
	for i := 0; i < 2; i++ {
		pc := kafkabus.DefaultPublisherConfig()
		pc.Config = f.cfg()
		pc.Registerer = reg
		p, err := kafkabus.NewPublisher(pc, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pubs = append(pubs, p)
	}
	f.publishN(pubs[0], 3, nil)
	f.publishN(pubs[1], 2, nil)
	sc := kafkabus.DefaultSubscriberConfig()
	sc.Config = f.cfg()
	sc.ConsumerGroup = f.group
	sc.Registerer = reg
	s, err := kafkabus.NewSubscriber(sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch := f.subscribe(s)
	for i := 0; i < 5; i++ {
		receive(t, ch, 20*time.Second).Ack()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"kafkabus_published_messages_total": 5,
		"kafkabus_consumed_messages_total":  5,
		"kafkabus_committed_messages_total": 5,
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] += m.GetCounter().GetValue()
		}
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
}
