package consumers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/kafkabus"
)

// listOffsets returns, per partition of topic, its first offset (which ==
// kafka.FirstOffset) or its end offset (kafka.LastOffset). Kafka refuses a
// request naming one partition twice, so first and end take two requests.
func listOffsets(ctx context.Context, client *kafka.Client, topic string, partitions []int, which int64) (map[int]int64, error) {
	reqs := make([]kafka.OffsetRequest, len(partitions))
	for i, p := range partitions {
		reqs[i] = kafka.OffsetRequest{Partition: p, Timestamp: which}
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{
		Addr:   client.Addr,
		Topics: map[string][]kafka.OffsetRequest{topic: reqs},
	})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	out := make(map[int]int64, len(partitions))
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %s partition %d: %w", topic, po.Partition, po.Error)
		}
		if which == kafka.FirstOffset {
			out[po.Partition] = po.FirstOffset
		} else {
			out[po.Partition] = po.LastOffset
		}
	}
	return out, nil
}

// groupBacklog returns, per partition of topic, the offset the group will
// read next (its committed offset, or the partition's first offset when it
// has none) and the partition's end offset.
func groupBacklog(ctx context.Context, cfg kafkabus.Config, topic, group string) (next, end map[int]int64, err error) {
	ids, err := kafkabus.PartitionIDs(ctx, cfg, topic)
	if err != nil {
		return nil, nil, err
	}
	client, err := cfg.Client()
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if tr, ok := client.Transport.(*kafka.Transport); ok {
			tr.CloseIdleConnections()
		}
	}()
	first, err := listOffsets(ctx, client, topic, ids, kafka.FirstOffset)
	if err != nil {
		return nil, nil, err
	}
	end, err = listOffsets(ctx, client, topic, ids, kafka.LastOffset)
	if err != nil {
		return nil, nil, err
	}
	committed, err := fetchCommitted(ctx, client, group, topic, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("committed offsets of group %s: %w", group, err)
	}
	next = make(map[int]int64, len(ids))
	for _, id := range ids {
		next[id] = first[id]
	}
	for _, p := range committed.Topics[topic] {
		if p.Error != nil {
			return nil, nil, fmt.Errorf("committed offset of group %s partition %d: %w", group, p.Partition, p.Error)
		}
		// Compaction or retention may have removed records below the
		// committed offset; those are not lag.
		if p.CommittedOffset >= 0 {
			next[p.Partition] = max(p.CommittedOffset, first[p.Partition])
		}
	}
	return next, end, nil
}

// GroupLag returns how many records of topic the consumer group has not
// committed yet, summed over partitions.
func GroupLag(ctx context.Context, cfg kafkabus.Config, topic, group string) (int64, error) {
	next, end, err := groupBacklog(ctx, cfg, topic, group)
	if err != nil {
		return 0, fmt.Errorf("consumers: lag of group %s on %s: %w", group, topic, err)
	}
	var lag int64
	for p, e := range end {
		if d := e - next[p]; d > 0 {
			lag += d
		}
	}
	return lag, nil
}

// KafkaLag returns a RuntimeDeps.Lag function for the calls topic, with
// each plug-in's group named by cfg.GroupID.
func KafkaLag(kcfg kafkabus.Config, cfg Config, topic string) func(ctx context.Context, plugin string) (int64, error) {
	return func(ctx context.Context, plugin string) (int64, error) {
		return GroupLag(ctx, kcfg, topic, cfg.GroupID(plugin))
	}
}

// fetchCommitted reads a group's committed offsets. The group coordinator
// may not be ready yet -- on a new cluster the first group request finds
// __consumer_offsets still being created -- so coordinator errors are
// retried with backoff for a bounded time.
func fetchCommitted(ctx context.Context, client *kafka.Client, group, topic string, ids []int) (*kafka.OffsetFetchResponse, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 100*time.Millisecond, 2*time.Second, 30*time.Second
	return backoff.RetryWithData(func() (*kafka.OffsetFetchResponse, error) {
		res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{
			Addr:    client.Addr,
			GroupID: group,
			Topics:  map[string][]int{topic: ids},
		})
		if err == nil && res.Error != nil {
			err = res.Error
		}
		if err != nil && !coordinatorNotReady(err) {
			return nil, backoff.Permanent(err)
		}
		return res, err
	}, backoff.WithContext(b, ctx))
}

func coordinatorNotReady(err error) bool {
	return errors.Is(err, kafka.NotCoordinatorForGroup) || errors.Is(err, kafka.GroupCoordinatorNotAvailable) ||
		errors.Is(err, kafka.GroupLoadInProgress)
}
