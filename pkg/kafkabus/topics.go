package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sort"
	"time"

	"github.com/cenkalti/backoff/v4"
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
// left as it is, even if its settings differ from spec. Transient broker
// errors are retried for up to 30 s and readiness is awaited for up to a
// minute; ctx can bound the whole call tighter.
func EnsureTopic(ctx context.Context, cfg Config, spec TopicSpec) error {
	if spec.Name == "" {
		return errors.New("kafkabus: ensure topic: empty topic name")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
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
	create := func() error {
		err := createTopic(ctx, cfg, tc)
		if err != nil && !retriable(err) {
			return backoff.Permanent(err)
		}
		return err
	}
	if err := backoff.Retry(create, backoff.WithContext(adminBackoff(), ctx)); err != nil {
		return fmt.Errorf("kafkabus: create topic %s: %w", spec.Name, err)
	}
	return waitTopicReady(ctx, cfg, spec.Name)
}

// SetTopicConfigs sets topic-level settings of an existing topic, leaving
// its other settings as they are (IncrementalAlterConfigs, SET). Transient
// broker errors are retried as in EnsureTopic.
func SetTopicConfigs(ctx context.Context, cfg Config, topic string, configs map[string]string) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	res := kafka.IncrementalAlterConfigsRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic}
	for _, k := range slices.Sorted(maps.Keys(configs)) {
		res.Configs = append(res.Configs, kafka.IncrementalAlterConfigsRequestConfig{
			Name: k, Value: configs[k], ConfigOperation: kafka.ConfigOperationSet})
	}
	alter := func() error {
		client, err := cfg.topicClient(topic)
		if err != nil {
			return backoff.Permanent(err)
		}
		defer closeIdle(client)
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		resp, err := client.IncrementalAlterConfigs(actx, &kafka.IncrementalAlterConfigsRequest{
			Resources: []kafka.IncrementalAlterConfigsRequestResource{res}})
		if err == nil {
			for _, r := range resp.Resources {
				if r.Error != nil {
					err = r.Error
				}
			}
		}
		if err != nil && !retriable(err) {
			return backoff.Permanent(err)
		}
		return err
	}
	if err := backoff.Retry(alter, backoff.WithContext(adminBackoff(), ctx)); err != nil {
		return fmt.Errorf("kafkabus: set configs %v of topic %s: %w", slices.Sorted(maps.Keys(configs)), topic, err)
	}
	return nil
}

// createTopic sends one CreateTopics request on a fresh client (a fresh
// metadata cache), treating "already exists" as success.
func createTopic(ctx context.Context, cfg Config, tc kafka.TopicConfig) error {
	client, err := cfg.topicClient(tc.Topic)
	if err != nil {
		return err
	}
	defer closeIdle(client)
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	res, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{tc}})
	if err != nil {
		return err
	}
	if err := res.Errors[tc.Topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
		return err
	}
	return nil
}

// attemptTimeout bounds one admin or metadata request inside a retry loop.
const attemptTimeout = 10 * time.Second

// retriable reports whether an admin request may succeed if sent again:
// Kafka's temporary errors (no controller or leader yet, broker busy) and
// network errors, not a bad request.
func retriable(err error) bool {
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		// kafka-go answers BrokerNotAvailable itself while its metadata
		// has no usable controller yet; a later attempt finds one.
		return kerr.Temporary() || kerr == kafka.BrokerNotAvailable
	}
	var nerr net.Error
	return errors.As(err, &nerr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) // an attempt's own timeout; the caller's ctx is checked by the retry loop
}

// adminBackoff paces retries of admin and offset requests.
func adminBackoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = time.Second
	b.MaxElapsedTime = 30 * time.Second
	return b
}

func orBrokerDefault(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

// waitTopicReady polls metadata until every partition of topic has a
// leader (creation is asynchronous in Kafka, and a producer that races it
// gets UnknownTopicOrPartition or LeaderNotAvailable), for at most a
// minute.
func waitTopicReady(ctx context.Context, cfg Config, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	delay := 20 * time.Millisecond
	for {
		ids, err := partitionIDsOnce(ctx, cfg, topic)
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
// on every call (a Transport's metadata cache can miss a topic that another
// client created a moment ago) and retries transient failures for a while;
// an unknown topic is reported at once.
func PartitionIDs(ctx context.Context, cfg Config, topic string) ([]int, error) {
	var ids []int
	op := func() error {
		var err error
		ids, err = partitionIDsOnce(ctx, cfg, topic)
		if err != nil && (errors.Is(err, kafka.UnknownTopicOrPartition) || !retriable(err)) {
			return backoff.Permanent(err)
		}
		return err
	}
	if err := backoff.Retry(op, backoff.WithContext(adminBackoff(), ctx)); err != nil {
		return nil, err
	}
	return ids, nil
}

// partitionIDsOnce makes one metadata request on a fresh client, bounded by
// attemptTimeout so a stuck connection is retried rather than waited on.
func partitionIDsOnce(ctx context.Context, cfg Config, topic string) ([]int, error) {
	client, err := cfg.topicClient(topic)
	if err != nil {
		return nil, err
	}
	defer closeIdle(client)
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
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

// EnsureTopics is EnsureTopic for several topics with the broker's default
// partition count.
func EnsureTopics(ctx context.Context, cfg Config, names ...string) error {
	for _, n := range names {
		if err := EnsureTopic(ctx, cfg, TopicSpec{Name: n}); err != nil {
			return err
		}
	}
	return nil
}
