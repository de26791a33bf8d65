package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/schemas"
)

// SubscribeBatches is Subscribe for consumers that handle messages in
// batches (the consumer runtime): it hands out up to maxMessages records at
// a time, in fetch order, or whatever was fetched within linger of the
// first. A batch makes no watermill message per record: its records are
// their payloads and positions, and a record's headers and message are read
// on demand (delivery.Batch). Settle gives every record its verdict at once:
// an acked record's offset becomes committable as its prefix of the
// partition is, as with Subscribe; a nacked one comes back, after
// NackResendSleep, at the head of a later batch. What costs a goroutine and
// a channel operation per message on Subscribe costs one per batch here.
// MaxInFlight bounds the unsettled records of all batches together, so give
// it at least maxMessages (times the batches the consumer handles at once,
// plus one being filled).
//
// A batch not settled when the subscription stops is not committed: the
// next reader gets its records again. The channel closes when ctx is done
// or the Subscriber is closed.
func (s *Subscriber) SubscribeBatches(ctx context.Context, topic string, maxMessages int, linger time.Duration) (<-chan *delivery.Batch, error) {
	if maxMessages <= 0 {
		return nil, fmt.Errorf("kafkabus: subscribe to %s in batches: maxMessages %d, want at least 1", topic, maxMessages)
	}
	sub, err := s.subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	b := &batchLoop{sub: sub, max: min(maxMessages, sub.s.cfg.MaxInFlight), linger: linger,
		out: make(chan *delivery.Batch), redeliver: make(chan kafka.Message, sub.s.cfg.MaxInFlight)}
	sub.loops.Add(1)
	go b.run()
	return b.out, nil
}

// batchLoop is the fetch loop of a batch subscription; the subscription's
// committer and close logic are shared with Subscribe.
type batchLoop struct {
	sub       *subscription
	max       int
	linger    time.Duration
	out       chan *delivery.Batch
	redeliver chan kafka.Message // nacked records, due again

	mu        sync.Mutex
	interrupt context.CancelFunc // cancels the wait for a batch's first record
}

func (b *batchLoop) run() {
	sub := b.sub
	defer sub.loops.Done()
	defer close(b.out)
	if sub.src.grouped() {
		go sub.committer()
	} else {
		close(sub.commitEnd)
	}
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
		if !b.send(batch) {
			return
		}
	}
}

// send hands a fetched batch over and starts waiting for its verdicts; it
// returns false, the batch released, if the subscription stopped first.
func (b *batchLoop) send(kms []kafka.Message) bool {
	records := make([]delivery.Record, len(kms))
	for i, km := range kms {
		records[i] = delivery.Record{Payload: km.Value, HasPosition: true,
			Position: schemas.Position{Topic: km.Topic, Partition: int32(km.Partition), Offset: km.Offset}}
	}
	verdicts := make(chan []bool, 1)
	batch := delivery.NewBatch(records, batchRecords{b.sub, kms}, func(acked []bool) { verdicts <- acked })
	select {
	case b.out <- batch:
	case <-b.sub.ctx.Done():
		b.release(kms)
		return false
	}
	b.sub.awaiters.Add(1)
	go b.await(kms, verdicts)
	return true
}

// batchRecords reads a batch's records as kafka-go returned them.
type batchRecords struct {
	sub *subscription
	kms []kafka.Message
}

func (r batchRecords) Message(i int) *message.Message { return r.sub.newMessage(r.kms[i], false) }

// Metadata reads a header straight from the record when the default
// unmarshaler would have copied it to the metadata unchanged; anything else
// (the delivery metadata, another unmarshaler's mapping) from the message.
func (r batchRecords) Metadata(i int, key string) string {
	if _, std := r.sub.s.cfg.Unmarshaler.(DefaultMarshaler); !std || isDeliveryMetadata(key) {
		return r.Message(i).Metadata.Get(key)
	}
	var v []byte
	for _, h := range r.kms[i].Headers {
		if h.Key == key && key != UUIDHeader {
			v = h.Value // the last one wins, as in the map
		}
	}
	return string(v)
}

// fill collects one batch: it blocks for the first message (a redelivery
// or a new record), then takes what arrives within linger, up to max and
// within the in-flight budget. A fetch error ends the batch early and is
// returned with what was collected.
func (b *batchLoop) fill() ([]kafka.Message, error) {
	sub := b.sub
	batch := make([]kafka.Message, 0, b.max)
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
func (b *batchLoop) first() (kafka.Message, error) {
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
func (b *batchLoop) next(ctx context.Context) (kafka.Message, error) {
	select {
	case km := <-b.redeliver:
		<-b.sub.slots // it kept the slot it had; give back the one just taken
		return km, nil
	default:
	}
	km, err := b.sub.src.FetchMessage(ctx)
	if err != nil {
		return kafka.Message{}, err
	}
	b.sub.consumed.Inc()
	if b.sub.src.grouped() {
		b.sub.tracker.add(km)
	}
	return km, nil
}

// await waits for the verdicts on a batch: an ack frees the record's slot
// and makes its offset committable, a nack schedules it again.
func (b *batchLoop) await(kms []kafka.Message, verdicts <-chan []bool) {
	sub := b.sub
	defer sub.awaiters.Done()
	var acked []bool
	select {
	case acked = <-verdicts:
	case <-sub.ctx.Done():
		// Verdicts given before the stop still count: the committer
		// commits them once every awaiter returned.
		select {
		case acked = <-verdicts:
		default:
			b.release(kms)
			return
		}
	}
	wake := false
	for i, km := range kms {
		if !acked[i] {
			sub.nacked.Inc()
			go b.later(km)
			continue
		}
		<-sub.slots
		if sub.src.grouped() && sub.tracker.ack(km) {
			wake = true
		}
	}
	if wake && sub.s.cfg.CommitInterval == 0 {
		select {
		case sub.wake <- struct{}{}:
		default:
		}
	}
}

// later puts a nacked record back in line after NackResendSleep; it keeps
// its in-flight slot meanwhile.
func (b *batchLoop) later(km kafka.Message) {
	if !sleepCtx(b.sub.ctx, b.sub.s.cfg.NackResendSleep) {
		<-b.sub.slots
		return
	}
	select {
	case b.redeliver <- km:
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

// release gives back the slots of records that will get no verdict because
// the subscription stopped. They are not committed: the next reader gets
// them again.
func (b *batchLoop) release(kms []kafka.Message) {
	for range kms {
		<-b.sub.slots
	}
}
