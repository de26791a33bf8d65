package kafkabus_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/schemas"
)

// TestOffsetsHelpers checks EndOffsets, OffsetsAt and ReadRange against what
// was published in two phases separated in time.
func TestOffsetsHelpers(t *testing.T) {
	const partitions, phase1, phase2 = 3, 300, 200
	f := newFixture(t, partitions)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := f.cfg()

	end, err := kafkabus.EndOffsets(ctx, cfg, f.topic)
	if err != nil {
		t.Fatal(err)
	}
	for p := 0; p < partitions; p++ {
		if o, ok := end[p]; !ok || o != 0 {
			t.Fatalf("empty topic end offsets %v", end)
		}
	}

	pub := f.publisher()
	key := func(i int) string { return "k" + strconv.Itoa(i%11) }
	f.publishN(pub, phase1, key)
	mid, err := kafkabus.EndOffsets(ctx, cfg, f.topic)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	split := time.Now()
	time.Sleep(50 * time.Millisecond)
	msgs := make([]*message.Message, phase2)
	for i := range msgs {
		msgs[i] = message.NewMessage(watermill.NewUUID(), []byte("p2-"+strconv.Itoa(i)))
		msgs[i].Metadata.Set(schemas.KeyMetadata, key(i))
	}
	if err := pub.Publish(f.topic, msgs...); err != nil {
		t.Fatal(err)
	}

	end, err = kafkabus.EndOffsets(ctx, cfg, f.topic)
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	for _, o := range end {
		total += o
	}
	if total != phase1+phase2 {
		t.Fatalf("end offsets %v sum to %d, want %d", end, total, phase1+phase2)
	}

	at, err := kafkabus.OffsetsAt(ctx, cfg, f.topic, split)
	if err != nil {
		t.Fatal(err)
	}
	for p := 0; p < partitions; p++ {
		if at[p] != mid[p] {
			t.Fatalf("OffsetsAt(split) = %v, want the end offsets before phase 2 %v", at, mid)
		}
	}
	future, err := kafkabus.OffsetsAt(ctx, cfg, f.topic, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for p := 0; p < partitions; p++ {
		if future[p] != end[p] {
			t.Fatalf("OffsetsAt(future) = %v, want end offsets %v", future, end)
		}
	}

	// From the split: exactly phase 2, each partition in offset order.
	got := map[string]bool{}
	last := map[int]int64{}
	err = kafkabus.ReadRange(ctx, cfg, f.topic, at, func(m kafka.Message) error {
		if prev, ok := last[m.Partition]; ok && m.Offset <= prev {
			return fmt.Errorf("partition %d: offset %d after %d", m.Partition, m.Offset, prev)
		}
		last[m.Partition] = m.Offset
		got[string(m.Value)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != phase2 {
		t.Fatalf("ReadRange from split read %d records, want %d", len(got), phase2)
	}
	for i := 0; i < phase2; i++ {
		if !got["p2-"+strconv.Itoa(i)] {
			t.Fatalf("ReadRange missed p2-%d", i)
		}
	}

	// From nothing: everything. Records published after the call started
	// are not waited for.
	n := 0
	if err := kafkabus.ReadRange(ctx, cfg, f.topic, nil, func(kafka.Message) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != phase1+phase2 {
		t.Fatalf("ReadRange from the start read %d, want %d", n, phase1+phase2)
	}

	// An error from fn stops the read and comes back.
	stop := errors.New("stop")
	if err := kafkabus.ReadRange(ctx, cfg, f.topic, nil, func(kafka.Message) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("ReadRange with failing fn: %v", err)
	}
}

// TestEnsureTopic creates a compacted topic, accepts a second call for the
// same topic, and rejects an empty name.
func TestEnsureTopic(t *testing.T) {
	f := newFixture(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := f.topic + ".state"
	spec := kafkabus.TopicSpec{Name: name, Partitions: 3, ReplicationFactor: 1, Configs: map[string]string{"cleanup.policy": "compact"}}
	for i := 0; i < 2; i++ {
		if err := kafkabus.EnsureTopic(ctx, f.cfg(), spec); err != nil {
			t.Fatalf("EnsureTopic call %d: %v", i+1, err)
		}
	}
	ids, err := kafkabus.PartitionIDs(ctx, f.cfg(), name)
	if err != nil || len(ids) != 3 {
		t.Fatalf("partitions %v, %v; want 3", ids, err)
	}
	client, err := f.cfg().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Transport.(*kafka.Transport).CloseIdleConnections()
	res, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: name, ConfigNames: []string{"cleanup.policy"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	policy := ""
	for _, r := range res.Resources {
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "cleanup.policy" {
				policy = e.ConfigValue
			}
		}
	}
	if policy != "compact" {
		t.Fatalf("cleanup.policy = %q, want compact", policy)
	}
	if err := kafkabus.EnsureTopic(ctx, f.cfg(), kafkabus.TopicSpec{}); err == nil {
		t.Fatal("EnsureTopic with an empty name succeeded")
	}
}

// TestOffsetsOfMissingTopicFailFast: asking about a topic that does not
// exist is an error at once, not after the transient-error retries.
func TestOffsetsOfMissingTopicFailFast(t *testing.T) {
	f := newFixture(t, 1)
	missing := f.topic + ".missing"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := kafkabus.EndOffsets(ctx, f.cfg(), missing); !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Fatalf("EndOffsets of a missing topic: %v", err)
	}
	if _, err := kafkabus.PartitionIDs(ctx, f.cfg(), missing); !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Fatalf("PartitionIDs of a missing topic: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("missing topic took %s to report", d)
	}
}
