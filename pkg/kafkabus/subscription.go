package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// commitTimeout bounds one offset commit, so a broker that went away cannot
// hang Close.
const commitTimeout = 10 * time.Second

// subscription is one Subscribe call: a fetch loop that delivers records on
// out, at most MaxInFlight of them unacked at once, and a committer that
// commits the acked prefix of every partition.
type subscription struct {
	s       *Subscriber
	topic   string
	src     source
	out     chan *message.Message
	slots   chan struct{} // one token per unacked message
	tracker *commitTracker
	labels  watermill.LogFields

	consumed, committed, nacked prometheus.Counter // this topic's series

	ctx      context.Context // canceled when the subscription stops
	cancel   context.CancelFunc
	valueCtx context.Context // the Subscribe context, for message context values

	wake      chan struct{} // tells the committer that offsets became committable
	loops     sync.WaitGroup
	awaiters  sync.WaitGroup
	commitEnd chan struct{}

	closeOnce sync.Once
	closeErr  error
}

func newSubscription(s *Subscriber, subscribeCtx context.Context, topic string, src source) *subscription {
	ctx, cancel := context.WithCancel(context.Background())
	return &subscription{
		s:         s,
		topic:     topic,
		src:       src,
		out:       make(chan *message.Message),
		slots:     make(chan struct{}, s.cfg.MaxInFlight),
		tracker:   newCommitTracker(),
		labels:    watermill.LogFields{"topic": topic, "consumer_group": s.cfg.ConsumerGroup},
		consumed:  s.metrics.consumed.WithLabelValues(topic),
		committed: s.metrics.committed.WithLabelValues(topic),
		nacked:    s.metrics.nacked.WithLabelValues(topic),
		ctx:       ctx,
		cancel:    cancel,
		valueCtx:  subscribeCtx,
		wake:      make(chan struct{}, 1),
		commitEnd: make(chan struct{}),
	}
}

// run fetches and delivers until the subscription stops.
func (sub *subscription) run() {
	defer sub.loops.Done()
	if sub.src.grouped() {
		go sub.committer()
	} else {
		close(sub.commitEnd)
	}
	strict := sub.s.cfg.MaxInFlight == 1
	backoff := 50 * time.Millisecond
	for {
		select {
		case sub.slots <- struct{}{}:
		case <-sub.ctx.Done():
			return
		}
		km, err := sub.src.FetchMessage(sub.ctx)
		if err != nil {
			<-sub.slots
			if sub.ctx.Err() != nil {
				return
			}
			sub.s.metrics.errors.WithLabelValues("fetch").Inc()
			sub.s.logger.Error("kafkabus: fetch failed", err, sub.labels)
			if !sleepCtx(sub.ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		sub.consumed.Inc()
		if sub.src.grouped() {
			sub.tracker.add(km)
		}
		// The first delivery happens here, in fetch order; waiting for the
		// ack happens here too in strict mode, so the next record is not even
		// fetched before this one is acked.
		msg, done, ok := sub.send(km)
		if !ok {
			return
		}
		if strict {
			if !sub.await(km, msg, done) {
				return
			}
			continue
		}
		sub.awaiters.Add(1)
		go func() {
			defer sub.awaiters.Done()
			sub.await(km, msg, done)
		}()
	}
}

// send delivers one record as a new watermill message. ok is false if the
// subscription stopped first.
func (sub *subscription) send(km kafka.Message) (msg *message.Message, done context.CancelFunc, ok bool) {
	msg = sub.newMessage(km, true)
	ctx := msg.Context().(*delivery.Context)
	select {
	case sub.out <- msg:
		return msg, ctx.Cancel, true
	case <-sub.ctx.Done():
		ctx.Cancel()
		return nil, nil, false
	}
}

// newMessage turns a record into a message with its delivery metadata and,
// when withCtx, a context canceled once it is acked or nacked (else the
// Subscribe context).
func (sub *subscription) newMessage(km kafka.Message, withCtx bool) *message.Message {
	msg, err := sub.s.cfg.Unmarshaler.Unmarshal(km)
	if err != nil || msg == nil {
		// Deliver the raw record rather than drop or block on it: the
		// handler (or the poison-queue middleware) decides what it is worth.
		sub.s.metrics.errors.WithLabelValues("unmarshal").Inc()
		msg, _ = DefaultMarshaler{}.Unmarshal(km)
		msg.Metadata[schemas.UnmarshalErrorMetadata] = fmt.Sprint(err)
	}
	if msg.Metadata == nil {
		msg.Metadata = message.Metadata{}
	}
	setDeliveryMetadata(msg, km)
	if withCtx {
		msg.SetContext(delivery.NewContext(sub.valueCtx))
	} else {
		msg.SetContext(sub.valueCtx)
	}
	return msg
}

// await waits for the handler's verdict on msg and redelivers the record
// after a Nack until it is acked. It frees the in-flight slot on Ack and
// returns false if the subscription stopped first.
func (sub *subscription) await(km kafka.Message, msg *message.Message, done context.CancelFunc) bool {
	for {
		acked := msg.Acked()
		if sub.ctx.Err() != nil {
			// Stopping: an ack given before the stop still counts, so it
			// is the one verdict looked at.
			select {
			case <-acked:
			default:
				done()
				return false
			}
		}
		select {
		case <-acked:
			done()
			<-sub.slots
			// With a commit interval the committer polls on its ticker
			// instead, sparing a goroutine wake-up per message.
			if sub.src.grouped() && sub.tracker.ack(km) && sub.s.cfg.CommitInterval == 0 {
				select {
				case sub.wake <- struct{}{}:
				default:
				}
			}
			return true
		case <-msg.Nacked():
			done()
			sub.nacked.Inc()
			if !sleepCtx(sub.ctx, sub.s.cfg.NackResendSleep) {
				return false
			}
		case <-sub.ctx.Done():
			continue // the check above decides
		}
		var ok bool
		msg, done, ok = sub.send(km)
		if !ok {
			return false
		}
	}
}

// committer commits acked prefixes one request at a time: with
// CommitInterval 0 as soon as something is committable (everything acked
// while a commit is in flight goes into the next one), else on a ticker.
func (sub *subscription) committer() {
	defer close(sub.commitEnd)
	var tick <-chan time.Time
	if iv := sub.s.cfg.CommitInterval; iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-sub.wake:
			sub.commitReady()
		case <-tick:
			sub.commitReady()
		case <-sub.ctx.Done():
			// Commit what was acked before delivery stopped.
			<-sub.drained()
			sub.commitReady()
			return
		}
	}
}

// commitReady commits what became committable. It does not use the
// subscription's context: a commit under way when Close is called is let
// finish, bounded by commitTimeout.
func (sub *subscription) commitReady() {
	msgs, n := sub.tracker.take()
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	if err := sub.src.commit(ctx, msgs); err != nil {
		sub.s.metrics.errors.WithLabelValues("commit").Inc()
		if errors.Is(err, io.ErrClosedPipe) {
			return
		}
		sub.s.logger.Error("kafkabus: commit failed, will retry", err, sub.labels)
		sub.tracker.putBack(msgs)
		if sleepCtx(sub.ctx, 200*time.Millisecond) && sub.s.cfg.CommitInterval == 0 {
			select {
			case sub.wake <- struct{}{}:
			default:
			}
		}
		return
	}
	sub.committed.Add(float64(n))
}

// drained returns a channel closed once the fetch loop and every awaiter
// have returned.
func (sub *subscription) drained() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		sub.loops.Wait()
		sub.awaiters.Wait()
		close(ch)
	}()
	return ch
}

// close stops delivery, closes the output channel, commits what was acked
// and closes the readers (leaving the group). Safe to call more than once.
func (sub *subscription) close() error {
	sub.closeOnce.Do(func() {
		sub.cancel()
		<-sub.drained()
		close(sub.out)
		<-sub.commitEnd
		if err := sub.src.Close(); err != nil {
			sub.s.metrics.errors.WithLabelValues("close").Inc()
			sub.closeErr = fmt.Errorf("kafkabus: close reader of %s: %w", sub.topic, err)
		}
	})
	return sub.closeErr
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
