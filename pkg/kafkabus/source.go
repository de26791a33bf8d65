package kafkabus

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/segmentio/kafka-go"
)

// source is where a subscription's records come from: a group Reader, or
// one Reader per partition without a group.
type source interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	// commit is nil for sources without a group.
	commit(ctx context.Context, msgs []kafka.Message) error
	grouped() bool
	Close() error
}

type groupSource struct{ r *kafka.Reader }

func (g groupSource) FetchMessage(ctx context.Context) (kafka.Message, error) {
	return g.r.FetchMessage(ctx)
}

func (g groupSource) commit(ctx context.Context, msgs []kafka.Message) error {
	return g.r.CommitMessages(ctx, msgs...)
}

func (g groupSource) grouped() bool { return true }
func (g groupSource) Close() error  { return g.r.Close() }

// partitionSource merges one partition Reader per partition, keeping each
// partition's order.
type partitionSource struct {
	readers []*kafka.Reader
	ch      chan kafka.Message
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func newPartitionSource(s *Subscriber, topic string, partitions []int, start map[int]int64) *partitionSource {
	ctx, cancel := context.WithCancel(context.Background())
	p := &partitionSource{ch: make(chan kafka.Message), ctx: ctx, cancel: cancel}
	for _, id := range partitions {
		rc := s.readerConfig(topic)
		rc.Partition = id
		r := kafka.NewReader(rc)
		// StartOffset applies to groups only; a partition reader starts
		// where SetOffset says.
		if err := r.SetOffset(start[id]); err != nil {
			s.logger.Error("kafkabus: set start offset", err, watermill.LogFields{"topic": topic, "partition": id})
		}
		p.readers = append(p.readers, r)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					s.metrics.errors.WithLabelValues("fetch").Inc()
					s.logger.Error("kafkabus: fetch failed", err, watermill.LogFields{"topic": topic, "partition": id})
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Second):
					}
					continue
				}
				select {
				case p.ch <- m:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return p
}

func (p *partitionSource) FetchMessage(ctx context.Context) (kafka.Message, error) {
	select {
	case m := <-p.ch:
		return m, nil
	case <-ctx.Done():
		return kafka.Message{}, ctx.Err()
	case <-p.ctx.Done():
		return kafka.Message{}, errors.New("kafkabus: partition readers closed")
	}
}

func (p *partitionSource) commit(context.Context, []kafka.Message) error { return nil }
func (p *partitionSource) grouped() bool                                 { return false }

func (p *partitionSource) Close() error {
	p.cancel()
	var errs []error
	for _, r := range p.readers {
		errs = append(errs, r.Close())
	}
	p.wg.Wait()
	return errors.Join(errs...)
}
