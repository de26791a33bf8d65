package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/segmentio/kafka-go"
)

// readRangeIdle is how long ReadRange waits for the next record of a
// partition that has not reached its end offset before it gives up.
const readRangeIdle = 10 * time.Second

// EndOffsets returns the high watermark of every partition of topic: the
// offset the next record written to it will get.
func EndOffsets(ctx context.Context, cfg Config, topic string) (map[int]int64, error) {
	return listOffsets(ctx, cfg, topic, func(p int) kafka.OffsetRequest { return kafka.LastOffsetOf(p) })
}

// startOffsets returns the log start offset of every partition.
func startOffsets(ctx context.Context, cfg Config, topic string) (map[int]int64, error) {
	return listOffsets(ctx, cfg, topic, func(p int) kafka.OffsetRequest { return kafka.FirstOffsetOf(p) })
}

// OffsetsAt returns, for every partition of topic, the first offset whose
// record timestamp is at or after t, or the end offset when there is none.
func OffsetsAt(ctx context.Context, cfg Config, topic string, t time.Time) (map[int]int64, error) {
	at, err := listOffsets(ctx, cfg, topic, func(p int) kafka.OffsetRequest { return kafka.TimeOffsetOf(p, t) })
	if err != nil {
		return nil, err
	}
	var end map[int]int64
	for p, o := range at {
		if o >= 0 {
			continue
		}
		if end == nil {
			if end, err = EndOffsets(ctx, cfg, topic); err != nil {
				return nil, err
			}
		}
		at[p] = end[p]
	}
	return at, nil
}

// listOffsets asks for one offset per partition; the request kind decides
// which. For a time query a partition with no such record maps to -1.
// Transient broker errors (a leader still being elected on a new topic, say)
// are retried for a while.
func listOffsets(ctx context.Context, cfg Config, topic string, req func(partition int) kafka.OffsetRequest) (map[int]int64, error) {
	var out map[int]int64
	op := func() error {
		var err error
		out, err = listOffsetsOnce(ctx, cfg, topic, req)
		if err != nil && !retriable(err) {
			return backoff.Permanent(err)
		}
		return err
	}
	if err := backoff.Retry(op, backoff.WithContext(adminBackoff(), ctx)); err != nil {
		return nil, err
	}
	return out, nil
}

func listOffsetsOnce(ctx context.Context, cfg Config, topic string, req func(partition int) kafka.OffsetRequest) (map[int]int64, error) {
	ids, err := partitionIDsOnce(ctx, cfg, topic)
	if errors.Is(err, kafka.UnknownTopicOrPartition) {
		return nil, backoff.Permanent(err) // a missing topic is not transient here
	}
	if err != nil {
		return nil, err
	}
	client, err := cfg.topicClient(topic)
	if err != nil {
		return nil, err
	}
	defer closeIdle(client)
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	reqs := make([]kafka.OffsetRequest, len(ids))
	for i, id := range ids {
		reqs[i] = req(id)
	}
	res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("kafkabus: list offsets of %s: %w", topic, err)
	}
	out := make(map[int]int64, len(ids))
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("kafkabus: list offsets of %s partition %d: %w", topic, po.Partition, po.Error)
		}
		switch reqs[0].Timestamp {
		case kafka.FirstOffset:
			out[po.Partition] = po.FirstOffset
		case kafka.LastOffset:
			out[po.Partition] = po.LastOffset
		default:
			out[po.Partition] = -1
			for o := range po.Offsets {
				if o >= 0 {
					out[po.Partition] = o
				}
			}
		}
	}
	if len(out) != len(ids) {
		return nil, fmt.Errorf("kafkabus: list offsets of %s: %d of %d partitions answered", topic, len(out), len(ids))
	}
	return out, nil
}

// ReadRange reads every partition of topic from from[p] (a missing
// partition, or an offset below the log start, means its beginning) up to
// the end offset observed when it is called, calling fn for each record,
// then returns. Partitions are read in parallel but fn is never called
// concurrently; records of one partition come in offset order. An error
// from fn stops the read and is returned.
//
// Records written by a transactional producer would leave control records
// at the end of a partition that no reader returns; ReadRange then fails
// after waiting readRangeIdle rather than return early without them.
// callstream's producers are not transactional.
func ReadRange(ctx context.Context, cfg Config, topic string, from map[int]int64, fn func(kafka.Message) error) error {
	end, err := EndOffsets(ctx, cfg, topic)
	if err != nil {
		return err
	}
	start, err := startOffsets(ctx, cfg, topic)
	if err != nil {
		return err
	}
	dialer, err := cfg.Dialer()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		mu       sync.Mutex // serialises fn
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	for p, stop := range end {
		begin := start[p]
		if o, ok := from[p]; ok && o > begin {
			begin = o
		}
		if begin >= stop {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := readPartition(ctx, cfg, dialer, topic, p, begin, stop, func(m kafka.Message) error {
				mu.Lock()
				defer mu.Unlock()
				return fn(m)
			}); err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// readPartition reads [begin, stop) of one partition straight from its
// leader, batch by batch: no Reader goroutine or per-record channel hop,
// which is what makes a restore fast.
func readPartition(ctx context.Context, cfg Config, dialer *kafka.Dialer, topic string, partition int, begin, stop int64, fn func(kafka.Message) error) error {
	where := func(offset int64) string {
		return fmt.Sprintf("kafkabus: read %s partition %d at offset %d", topic, partition, offset)
	}
	conn, err := dialLeader(ctx, cfg, dialer, topic, partition)
	if err != nil {
		return fmt.Errorf("%s: %w", where(begin), err)
	}
	defer conn.Close()
	stopWatch := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stopWatch()
	if _, err := conn.Seek(begin, kafka.SeekAbsolute); err != nil {
		return fmt.Errorf("%s: %w", where(begin), err)
	}
	next := begin
	idleSince := time.Now()
	for next < stop {
		if err := conn.SetReadDeadline(time.Now().Add(readRangeIdle)); err != nil {
			return fmt.Errorf("%s: %w", where(next), err)
		}
		batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 500 * time.Millisecond})
		var fnErr error
		for next < stop {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			next = m.Offset + 1
			if m.Offset >= stop {
				break
			}
			if fnErr = fn(m); fnErr != nil {
				break
			}
		}
		if err := batch.Close(); err != nil && fnErr == nil && next < stop {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: %w", where(next), err)
		}
		if fnErr != nil {
			return fnErr
		}
		if off, _ := conn.Offset(); off > next {
			next = off // control records skipped by the batch
		}
		if next > begin {
			begin, idleSince = next, time.Now()
		} else if time.Since(idleSince) > readRangeIdle {
			return fmt.Errorf("%s: no record before end offset %d within %s", where(next), stop, readRangeIdle)
		}
	}
	return nil
}

// dialLeader connects to the leader of a partition, trying each broker.
func dialLeader(ctx context.Context, cfg Config, dialer *kafka.Dialer, topic string, partition int) (*kafka.Conn, error) {
	var errs []error
	for _, b := range cfg.Brokers {
		conn, err := dialer.DialLeader(ctx, "tcp", b, topic, partition)
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
