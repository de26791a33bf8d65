package lake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// driver is a minimal stand-in for the consumer runtime on Kafka, so the
// lake's exactly-once logic runs against the real broker while the runtime
// is built elsewhere: one reader per partition, each message handed to
// Handle in its own goroutine (as the watermill router does), at most
// maxInFlight unacknowledged, and the group's offset committed per
// partition only up to the contiguous prefix of acknowledged messages (as
// kafkabus does in pipelined mode).
type driver struct {
	brokers     []string
	topic       string
	group       string
	partitions  int
	maxInFlight int
	// throttle, when set, pauses this long after every 100 messages of a
	// partition, to make a run long enough to kill in the middle.
	throttle time.Duration
	// stopAfter ends a run once this many messages were acknowledged;
	// 0 runs until the context is done.
	stopAfter int
}

// partitionAcks tracks a partition's in-flight offsets in fetch order.
type partitionAcks struct {
	mu      sync.Mutex
	offsets []int64 // fetched, not yet committed, in order
	acked   map[int64]bool
}

// run consumes until ctx is done or stopAfter messages were acknowledged,
// and returns the number acknowledged.
func (dr *driver) run(ctx context.Context, h consumers.Handler) (int, error) {
	client := &kafka.Client{Addr: kafka.TCP(dr.brokers...), Timeout: 10 * time.Second}
	parts := make([]int, dr.partitions)
	for i := range parts {
		parts[i] = i
	}
	fetched, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: dr.group, Topics: map[string][]int{dr.topic: parts}})
	if err != nil {
		return 0, fmt.Errorf("fetch committed offsets: %w", err)
	}
	start := make(map[int]int64)
	for _, p := range fetched.Topics[dr.topic] {
		if p.Error != nil {
			return 0, fmt.Errorf("committed offset of partition %d: %w", p.Partition, p.Error)
		}
		start[p.Partition] = p.CommittedOffset
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, dr.maxInFlight)
	acks := make([]*partitionAcks, dr.partitions)
	var mu sync.Mutex
	total := 0
	errc := make(chan error, dr.partitions+1)
	var wg sync.WaitGroup
	for p := range dr.partitions {
		acks[p] = &partitionAcks{acked: make(map[int64]bool)}
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: dr.brokers, Topic: dr.topic, Partition: p, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond,
		})
		off := start[p]
		if off < 0 {
			off = kafka.FirstOffset
		}
		if err := r.SetOffset(off); err != nil {
			return 0, fmt.Errorf("seek partition %d: %w", p, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			for n := 0; ; n++ {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					if ctx.Err() == nil {
						errc <- fmt.Errorf("fetch from partition %d: %w", p, err)
					}
					return
				}
				if dr.throttle > 0 && n%100 == 99 {
					time.Sleep(dr.throttle)
				}
				var e schemas.CallEvent
				if err := json.Unmarshal(m.Value, &e); err != nil {
					errc <- fmt.Errorf("decode offset %d: %w", m.Offset, err)
					return
				}
				pa := acks[p]
				pa.mu.Lock()
				pa.offsets = append(pa.offsets, m.Offset)
				pa.mu.Unlock()
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				d := delivery(e, m.Partition, m.Offset)
				go func() {
					defer func() { <-sem }()
					// A failed Handle is retried, as the runtime's retry
					// middleware does; only a shutdown stops it.
					for h.Handle(ctx, d) != nil {
						if ctx.Err() != nil {
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
					pa.mu.Lock()
					pa.acked[m.Offset] = true
					pa.mu.Unlock()
					mu.Lock()
					total++
					mu.Unlock()
				}()
			}
		}()
	}

	commit := func() error {
		req := &kafka.OffsetCommitRequest{GroupID: dr.group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{}}
		for p, pa := range acks {
			pa.mu.Lock()
			n := 0
			for n < len(pa.offsets) && pa.acked[pa.offsets[n]] {
				delete(pa.acked, pa.offsets[n])
				n++
			}
			if n > 0 {
				// The committed offset is the next one to read.
				req.Topics[dr.topic] = append(req.Topics[dr.topic], kafka.OffsetCommit{Partition: p, Offset: pa.offsets[n-1] + 1})
				pa.offsets = pa.offsets[n:]
			}
			pa.mu.Unlock()
		}
		if len(req.Topics) == 0 {
			return nil
		}
		resp, err := client.OffsetCommit(context.WithoutCancel(ctx), req)
		if err != nil {
			return fmt.Errorf("commit offsets: %w", err)
		}
		for _, ps := range resp.Topics {
			for _, p := range ps {
				if p.Error != nil {
					return fmt.Errorf("commit offset of partition %d: %w", p.Partition, p.Error)
				}
			}
		}
		return nil
	}

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-errc:
			runErr = err
			break loop
		case <-tick.C:
			if err := commit(); err != nil {
				runErr = err
				break loop
			}
			mu.Lock()
			n := total
			mu.Unlock()
			if dr.stopAfter > 0 && n >= dr.stopAfter {
				break loop
			}
		}
	}
	cancel()
	wg.Wait()
	if err := commit(); err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
		runErr = err
	}
	mu.Lock()
	defer mu.Unlock()
	return total, runErr
}
