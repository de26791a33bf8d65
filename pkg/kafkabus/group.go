package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/segmentio/kafka-go"
)

// GroupBacklog returns, per partition of topic, the offset the consumer
// group will read next (its committed offset, or the partition's first
// offset when it has none or retention removed what it had) and the
// partition's end offset.
func GroupBacklog(ctx context.Context, cfg Config, topic, group string) (next, end map[int]int64, err error) {
	first, err := startOffsets(ctx, cfg, topic)
	if err != nil {
		return nil, nil, err
	}
	end, err = EndOffsets(ctx, cfg, topic)
	if err != nil {
		return nil, nil, err
	}
	committed, err := CommittedOffsets(ctx, cfg, topic, group)
	if err != nil {
		return nil, nil, err
	}
	next = make(map[int]int64, len(end))
	for p := range end {
		next[p] = first[p]
		if c, ok := committed[p]; ok && c >= 0 {
			next[p] = max(c, first[p])
		}
	}
	return next, end, nil
}

// GroupLag returns how many records of topic the consumer group has not
// committed yet, summed over partitions.
func GroupLag(ctx context.Context, cfg Config, topic, group string) (int64, error) {
	next, end, err := GroupBacklog(ctx, cfg, topic, group)
	if err != nil {
		return 0, fmt.Errorf("kafkabus: lag of group %s on %s: %w", group, topic, err)
	}
	var lag int64
	for p, e := range end {
		lag += max(0, e-next[p])
	}
	return lag, nil
}

// CommittedOffsets returns the group's committed offset per partition of
// topic (-1 for a partition without one). The group coordinator may not be
// ready yet (on a new cluster the first group request finds
// __consumer_offsets still being created), so coordinator errors are
// retried with backoff for a bounded time.
func CommittedOffsets(ctx context.Context, cfg Config, topic, group string) (map[int]int64, error) {
	ids, err := PartitionIDs(ctx, cfg, topic)
	if err != nil {
		return nil, err
	}
	client, err := cfg.topicClient(topic)
	if err != nil {
		return nil, err
	}
	defer closeIdle(client)
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 100*time.Millisecond, 2*time.Second, 30*time.Second
	res, err := backoff.RetryWithData(func() (*kafka.OffsetFetchResponse, error) {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		res, err := client.OffsetFetch(actx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ids}})
		if err == nil && res.Error != nil {
			err = res.Error
		}
		if err != nil && !coordinatorNotReady(err) && !retriable(err) {
			return nil, backoff.Permanent(err)
		}
		return res, err
	}, backoff.WithContext(b, ctx))
	if err != nil {
		return nil, fmt.Errorf("kafkabus: committed offsets of group %s on %s: %w", group, topic, err)
	}
	out := make(map[int]int64, len(ids))
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("kafkabus: committed offset of group %s on %s partition %d: %w", group, topic, p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out, nil
}

func coordinatorNotReady(err error) bool {
	return errors.Is(err, kafka.NotCoordinatorForGroup) || errors.Is(err, kafka.GroupCoordinatorNotAvailable) ||
		errors.Is(err, kafka.GroupLoadInProgress)
}

// Admin answers questions about consumer groups, for tooling that must not
// depend on Kafka by name (the consumer runtime's lag gauge, DLQ replay).
type Admin struct{ cfg Config }

// NewAdmin returns an Admin on the cluster of cfg.
func NewAdmin(cfg Config) *Admin { return &Admin{cfg: cfg} }

// Lag returns how many records of topic the group has not committed yet.
func (a *Admin) Lag(ctx context.Context, topic, group string) (int64, error) {
	return GroupLag(ctx, a.cfg, topic, group)
}
