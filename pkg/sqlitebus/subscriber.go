package sqlitebus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/delivery"
)

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// Subscriber is the watermill message.Subscriber of a Bus for one consumer
// group (or none). Closing it stops its subscriptions; the Bus stays open.
type Subscriber struct {
	b   *Bus
	cfg SubscriberConfig

	mu     sync.Mutex
	closed bool
	subs   map[*subscription]struct{}
}

// Subscriber returns a new Subscriber on b.
func (b *Bus) Subscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Subscriber{b: b, cfg: cfg, subs: map[*subscription]struct{}{}}
	if err := b.register(nil, s); err != nil {
		return nil, err
	}
	return s, nil
}

// SubscribeInitialize creates topic unless it exists.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	ctx, cancel := context.WithTimeout(s.b.ctx, s.b.cfg.LockTimeout)
	defer cancel()
	_, err := s.b.ensureTopic(ctx, topic)
	return err
}

// Subscribe delivers the messages of topic one at a time, at most
// MaxInFlight of them unacked. The channel closes when ctx is done or the
// Subscriber (or Bus) is closed, after what was acked by then is
// committed.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	sub, err := s.subscribe(ctx, topic, false, 1, 0)
	if err != nil {
		return nil, err
	}
	return sub.out, nil
}

// SubscribeBatches delivers the messages of topic in batches: each holds up
// to maxMessages messages in offset order, or what was available within
// linger of its first message. A batch makes no watermill message per
// record (see delivery.Batch); its Settle gives each record its verdict (a
// nacked one comes again in a later batch). The subscriber's MaxInFlight
// bounds the unsettled messages over all batches, so a batch is also cut
// short when that budget is used up. The channel closes as for Subscribe.
func (s *Subscriber) SubscribeBatches(ctx context.Context, topic string, maxMessages int, linger time.Duration) (<-chan *delivery.Batch, error) {
	if maxMessages <= 0 {
		return nil, fmt.Errorf("sqlitebus: subscribe to %s in batches: maxMessages %d is not positive", topic, maxMessages)
	}
	if linger < 0 {
		return nil, fmt.Errorf("sqlitebus: subscribe to %s in batches: linger %s is negative", topic, linger)
	}
	sub, err := s.subscribe(ctx, topic, true, maxMessages, linger)
	if err != nil {
		return nil, err
	}
	return sub.outBatches, nil
}

func (s *Subscriber) subscribe(ctx context.Context, topic string, batches bool, maxMessages int, linger time.Duration) (*subscription, error) {
	if err := validTopic(topic); err != nil {
		return nil, err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("sqlitebus: subscribe to %s: %w", topic, ErrClosed)
	}
	tp, err := s.b.ensureTopic(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("sqlitebus: subscribe to %s: %w", topic, err)
	}
	start, err := s.startOffset(ctx, tp)
	if err != nil {
		return nil, fmt.Errorf("sqlitebus: subscribe to %s: %w", topic, err)
	}
	sub := newSubscription(s, ctx, tp, start, batches, maxMessages, linger)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("sqlitebus: subscribe to %s: %w", topic, ErrClosed)
	}
	s.subs[sub] = struct{}{}
	s.mu.Unlock()
	sub.start()
	go func() {
		select {
		case <-ctx.Done():
			sub.stop()
		case <-sub.ctx.Done():
		}
		<-sub.done
		s.mu.Lock()
		delete(s.subs, sub)
		s.mu.Unlock()
	}()
	return sub, nil
}

// startOffset is where a subscription without a group starts. With a
// group it registers the group on the topic now, at the start offset
// (first: 0, below anything retention kept; last: the end offset), unless
// it has a committed offset: so a message published after Subscribe
// returns is never skipped, even by a group starting at the end that
// restarts before its first commit, and retention counts the group from
// now on. The subscription reads the committed offset once it is the
// group's member (see subscription.run).
func (s *Subscriber) startOffset(ctx context.Context, tp *topic) (int64, error) {
	last := s.cfg.InitialOffset == OffsetLast
	if s.cfg.ConsumerGroup == "" {
		if !last {
			return 0, nil
		}
		end, _, err := s.b.topicBounds(ctx, tp)
		return end, err
	}
	err := s.b.w.do(func(tx *txn) error {
		_, err := tx.tx.ExecContext(tx.ctx, `INSERT INTO sqlitebus_groups (grp, topic_id, committed, updated_at)
			VALUES (?, ?, CASE WHEN ? THEN (SELECT next_offset FROM sqlitebus_topics WHERE id = ?) ELSE 0 END, ?)
			ON CONFLICT (grp, topic_id) DO UPDATE SET updated_at = excluded.updated_at`,
			s.cfg.ConsumerGroup, tp.id, last, tp.id, now())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("register consumer group %s: %w", s.cfg.ConsumerGroup, err)
	}
	return -1, nil
}

// Close stops every subscription of this Subscriber, committing what was
// acked, and returns once their channels are closed.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := make([]*subscription, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, sub := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub.stop()
		}()
	}
	wg.Wait()
	s.b.unregister(nil, s)
	return nil
}
