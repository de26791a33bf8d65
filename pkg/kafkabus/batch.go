package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"
)

// SubscribeBatches is Subscribe for consumers that handle messages in
// batches (the consumer runtime): it hands out up to maxMessages messages
// at a time, in fetch order, or whatever was fetched within linger of the
// first. Each message is acked or nacked on its own, as with Subscribe, and
// the acked prefix of every partition is committed the same way; what
// changes is the cost: one channel operation and one goroutine per batch,
// not per message. MaxInFlight bounds the unacked messages of all batches
// together, so give it at least maxMessages (times the batches the consumer
// handles at once, plus one being filled).
//
// Unlike with Subscribe, a message's context is the Subscribe context, not
// one canceled at its ack: a batch consumer has no use for it, and it costs
// two allocations a message. Verdicts are awaited in batch order, as the consumer runtime gives them: a
// message left without one holds back the release of the messages after it
// in its batch (their in-flight slots and commits) until it gets one. A
// nacked message comes back, after NackResendSleep, at the head of a later
// batch. The channel closes when ctx is done or the Subscriber is closed.
func (s *Subscriber) SubscribeBatches(ctx context.Context, topic string, maxMessages int, linger time.Duration) (<-chan []*message.Message, error) {
	if maxMessages <= 0 {
		return nil, fmt.Errorf("kafkabus: subscribe to %s in batches: maxMessages %d, want at least 1", topic, maxMessages)
	}
	sub, err := s.subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	b := &batchLoop{sub: sub, max: min(maxMessages, sub.s.cfg.MaxInFlight), linger: linger,
		out: make(chan []*message.Message), redeliver: make(chan *pending, sub.s.cfg.MaxInFlight), strings: newInterner()}
	sub.loops.Add(1)
	go b.run()
	return b.out, nil
}

// pending is a delivered message and the record it came from.
type pending struct {
	km   kafka.Message
	msg  *message.Message
	done context.CancelFunc
}

// batchLoop is the fetch loop of a batch subscription; the subscription's
// committer and close logic are shared with Subscribe.
type batchLoop struct {
	sub       *subscription
	max       int
	linger    time.Duration
	out       chan []*message.Message
	redeliver chan *pending // nacked messages, due again

	strings *interner // used by the convert stage alone

	mu        sync.Mutex
	interrupt context.CancelFunc // cancels the wait for a batch's first record
}

func (b *batchLoop) run() {
	sub := b.sub
	defer sub.loops.Done()
	if sub.src.grouped() {
		go sub.committer()
	} else {
		close(sub.commitEnd)
	}
	// Turning records into messages (headers into metadata) runs in a
	// stage of its own, so the next batch is fetched meanwhile: on a busy
	// topic the fetch loop is the pipeline's narrowest point.
	raw := make(chan []*pending, 1)
	sub.loops.Add(1)
	go b.convert(raw)
	backoff := 50 * time.Millisecond
	for sub.ctx.Err() == nil {
		batch, err := b.fill()
		if err != nil {
			if sub.ctx.Err() != nil {
				b.release(batch)
				return
			}
			sub.s.metrics.errors.WithLabelValues("fetch").Inc()
			sub.s.logger.Error("kafkabus: fetch failed", err, sub.labels)
			if len(batch) == 0 {
				if !sleepCtx(sub.ctx, backoff) {
					return
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
		} else {
			backoff = 50 * time.Millisecond
		}
		if len(batch) == 0 {
			continue
		}
		select {
		case raw <- batch:
		case <-sub.ctx.Done():
			b.release(batch)
			return
		}
	}
}

// convert makes the messages of each fetched batch and hands the batch
// over, in fetch order; it owns the output channel.
func (b *batchLoop) convert(raw <-chan []*pending) {
	sub := b.sub
	defer sub.loops.Done()
	defer close(b.out)
	for {
		var batch []*pending
		select {
		case batch = <-raw:
		case <-sub.ctx.Done():
			select {
			case batch = <-raw: // fetched but never handed over
				b.release(batch)
			default:
			}
			return
		}
		msgs := make([]*message.Message, len(batch))
		for i, p := range batch {
			msgs[i] = b.resend(p).msg
		}
		select {
		case b.out <- msgs:
		case <-sub.ctx.Done():
			b.release(batch)
			return
		}
		sub.awaiters.Add(1)
		go b.await(batch)
	}
}

// fill collects one batch: it blocks for the first message (a redelivery
// or a new record), then takes what arrives within linger, up to max and
// within the in-flight budget. A fetch error ends the batch early and is
// returned with what was collected.
func (b *batchLoop) fill() ([]*pending, error) {
	sub := b.sub
	var batch []*pending
	select {
	case sub.slots <- struct{}{}:
	case <-sub.ctx.Done():
		return nil, sub.ctx.Err()
	}
	first, err := b.first()
	if err != nil {
		<-sub.slots
		return nil, err
	}
	batch = append(batch, first)
	if b.max == 1 {
		return batch, nil
	}
	lctx, cancel := context.WithTimeout(sub.ctx, b.linger)
	defer cancel()
	for len(batch) < b.max {
		select {
		case sub.slots <- struct{}{}:
		default:
			return batch, nil // the budget is spent: hand over what we have
		}
		p, err := b.next(lctx)
		if err != nil {
			<-sub.slots
			if errors.Is(err, context.DeadlineExceeded) && sub.ctx.Err() == nil {
				return batch, nil // linger is over
			}
			return batch, err
		}
		batch = append(batch, p)
	}
	return batch, nil
}

// first waits for the first message of a batch. A nacked message that
// falls due meanwhile interrupts the wait for a new record, which may never
// come.
func (b *batchLoop) first() (*pending, error) {
	for {
		ctx, cancel := context.WithCancel(b.sub.ctx)
		b.mu.Lock()
		b.interrupt = cancel
		b.mu.Unlock()
		p, err := b.next(ctx)
		b.mu.Lock()
		b.interrupt = nil
		b.mu.Unlock()
		cancel()
		if err != nil && errors.Is(err, context.Canceled) && b.sub.ctx.Err() == nil {
			continue // a redelivery is due
		}
		return p, err
	}
}

// next returns a nacked message that is due, else the next record. A record
// fetched here holds the in-flight slot the caller took.
func (b *batchLoop) next(ctx context.Context) (*pending, error) {
	select {
	case p := <-b.redeliver:
		<-b.sub.slots // it kept the slot it had; give back the one just taken
		return p, nil
	default:
	}
	km, err := b.sub.src.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	b.sub.consumed.Inc()
	if b.sub.src.grouped() {
		b.sub.tracker.add(km)
	}
	return &pending{km: km}, nil
}

// resend turns a record into a fresh watermill message, for its first
// delivery or after a nack.
func (b *batchLoop) resend(p *pending) *pending {
	p.msg = b.sub.newMessage(p.km, b.strings, false)
	p.done = func() {}
	return p
}

// await waits for the verdict on every message of a batch, in order (acks
// usually come for the whole batch at once): an ack frees the slot and makes
// the offset committable, a nack schedules the message again.
func (b *batchLoop) await(batch []*pending) {
	sub := b.sub
	defer sub.awaiters.Done()
	wake := false
	acked := func(p *pending) {
		p.done()
		<-sub.slots
		if sub.src.grouped() && sub.tracker.ack(p.km) {
			wake = true
		}
	}
	defer func() {
		if wake && sub.s.cfg.CommitInterval == 0 {
			select {
			case sub.wake <- struct{}{}:
			default:
			}
		}
	}()
	for i, p := range batch {
		select {
		case <-p.msg.Acked():
			acked(p)
		case <-p.msg.Nacked():
			p.done()
			sub.nacked.Inc()
			go b.later(p)
		case <-sub.ctx.Done():
			// Acks given before the stop still count: the committer
			// commits them once every awaiter returned.
			for _, q := range batch[i:] {
				select {
				case <-q.msg.Acked():
					acked(q)
				default:
					b.release([]*pending{q})
				}
			}
			return
		}
	}
}

// later puts a nacked message back in line after NackResendSleep; it keeps
// its in-flight slot meanwhile.
func (b *batchLoop) later(p *pending) {
	if !sleepCtx(b.sub.ctx, b.sub.s.cfg.NackResendSleep) {
		<-b.sub.slots
		return
	}
	select {
	case b.redeliver <- p:
	case <-b.sub.ctx.Done():
		<-b.sub.slots
		return
	}
	b.mu.Lock()
	if b.interrupt != nil {
		b.interrupt()
	}
	b.mu.Unlock()
}

// release gives back the slots of messages that will get no verdict because
// the subscription stopped. They are not committed: the next reader gets
// them again.
func (b *batchLoop) release(batch []*pending) {
	for _, p := range batch {
		if p.done != nil {
			p.done()
		}
		<-b.sub.slots
	}
}
