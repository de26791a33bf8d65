package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes a topic to create.
type TopicSpec struct {
	// Name of the topic.
	Name string
	// Partitions is the partition count; 0 or -1 means the broker's
	// num.partitions.
	Partitions int
	// ReplicationFactor is the replica count; 0 or -1 means the broker's
	// default.replication.factor.
	ReplicationFactor int
	// Configs are topic-level settings, e.g. cleanup.policy=compact.
	Configs map[string]string
}

// EnsureTopic creates the topic if it does not exist yet and waits until
// its partitions have leaders. An existing topic counts as success and is
// left as it is, even if its settings differ from spec.
func EnsureTopic(ctx context.Context, cfg Config, spec TopicSpec) error {
	if spec.Name == "" {
		return errors.New("kafkabus: ensure topic: empty topic name")
	}
	client, err := cfg.Client()
	if err != nil {
		return err
	}
	defer closeIdle(client)
	tc := kafka.TopicConfig{
		Topic:             spec.Name,
		NumPartitions:     orBrokerDefault(spec.Partitions),
		ReplicationFactor: orBrokerDefault(spec.ReplicationFactor),
	}
	keys := make([]string, 0, len(spec.Configs))
	for k := range spec.Configs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: spec.Configs[k]})
	}
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{tc}})
	if err != nil {
		return fmt.Errorf("kafkabus: create topic %s: %w", spec.Name, err)
	}
	if err := res.Errors[spec.Name]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return fmt.Errorf("kafkabus: create topic %s: %w", spec.Name, err)
	}
	return waitTopicReady(ctx, cfg, spec.Name)
}

func orBrokerDefault(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

// waitTopicReady polls metadata until every partition of topic has a
// leader: creation is asynchronous in Kafka, and a producer that races it
// gets UnknownTopicOrPartition or LeaderNotAvailable.
func waitTopicReady(ctx context.Context, cfg Config, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	delay := 20 * time.Millisecond
	for {
		ids, err := PartitionIDs(ctx, cfg, topic)
		if err == nil && len(ids) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return fmt.Errorf("kafkabus: topic %s not ready: %w", topic, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// PartitionIDs returns the sorted partition ids of topic, or an error if the
// topic is unknown or a partition has no leader. It asks the brokers afresh
// on every call: a Transport's metadata cache can miss a topic that another
// client created a moment ago.
func PartitionIDs(ctx context.Context, cfg Config, topic string) ([]int, error) {
	client, err := cfg.Client()
	if err != nil {
		return nil, err
	}
	defer closeIdle(client)
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("kafkabus: metadata for topic %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("kafkabus: metadata for topic %s: %w", topic, t.Error)
		}
		ids := make([]int, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			if p.Error != nil {
				return nil, fmt.Errorf("kafkabus: metadata for topic %s partition %d: %w", topic, p.ID, p.Error)
			}
			if p.Leader.ID < 0 || p.Leader.Host == "" {
				return nil, fmt.Errorf("kafkabus: topic %s partition %d has no leader", topic, p.ID)
			}
			ids = append(ids, p.ID)
		}
		sort.Ints(ids)
		return ids, nil
	}
	return nil, fmt.Errorf("kafkabus: topic %s: %w", topic, kafka.UnknownTopicOrPartition)
}

// closeIdle releases the connections of a Client made by Config.Client.
func closeIdle(c *kafka.Client) {
	if tr, ok := c.Transport.(*kafka.Transport); ok {
		tr.CloseIdleConnections()
	}
}
