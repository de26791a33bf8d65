package delivery

import (
	"context"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/schemas"
)

// Batch is a run of messages a subscriber hands out together, for a
// consumer that settles them together (the consumer runtime). Unlike a
// slice of watermill messages it makes no message, metadata map or ack
// channel per record: a record is its payload and its position, and the
// rest (headers, the whole message) is read from the bus's own record only
// when asked for, which a healthy consumer does for the few records it
// dead-letters. Settle gives every record its verdict at once.
//
// Records, Metadata and Message may be used from any goroutine; Settle is
// called once, by the consumer.
type Batch struct {
	// Records are in the order the bus handed them out: offset order
	// within a partition.
	Records []Record

	src    Source
	settle func(acked []bool)
	once   sync.Once
}

// Record is one message of a Batch.
type Record struct {
	// Payload is the message's body, as on the bus. No one may write to it.
	Payload []byte
	// Position is where the message sits on the bus; HasPosition is false
	// on a bus that keeps none (watermill's GoChannel).
	Position    schemas.Position
	HasPosition bool
}

// Source reads what a Batch does not copy out of the bus's records.
type Source interface {
	// Metadata returns the value under key in the metadata record i would
	// have as a watermill message (headers and delivery metadata alike),
	// or "" when there is none.
	Metadata(i int, key string) string
	// Message returns record i as a new watermill message, with all its
	// metadata. Its Ack and Nack settle nothing (see Batch.Messages).
	Message(i int) *message.Message
}

// NewBatch returns a batch of records whose metadata src reads and whose
// verdicts settle receives, once, aligned with records: acked[i] true
// acknowledges record i, false gives it back to the bus to be delivered
// again.
func NewBatch(records []Record, src Source, settle func(acked []bool)) *Batch {
	return &Batch{Records: records, src: src, settle: settle}
}

// Len is the number of records.
func (b *Batch) Len() int { return len(b.Records) }

// Metadata returns the value of metadata key of record i ("" when unset).
func (b *Batch) Metadata(i int, key string) string { return b.src.Metadata(i, key) }

// Message returns record i as a new watermill message, a copy each call.
func (b *Batch) Message(i int) *message.Message { return b.src.Message(i) }

// Settle gives the verdicts, aligned with Records; only the first call
// counts. A consumer that stops before it can judge a record settles it
// false (nack).
func (b *Batch) Settle(acked []bool) {
	b.once.Do(func() { b.settle(acked) })
}

// Ack acknowledges every record of the batch.
func (b *Batch) Ack() {
	acked := make([]bool, len(b.Records))
	for i := range acked {
		acked[i] = true
	}
	b.Settle(acked)
}

// Nack gives every record of the batch back to the bus.
func (b *Batch) Nack() { b.Settle(make([]bool, len(b.Records))) }

// Messages returns the batch as watermill messages, for a consumer that
// gives verdicts message by message: the batch is settled once every
// message was acked or nacked, or, when ctx ends first, with the acks given
// by then (the rest nacked).
func (b *Batch) Messages(ctx context.Context) []*message.Message {
	msgs := make([]*message.Message, b.Len())
	for i := range msgs {
		msgs[i] = b.Message(i)
	}
	go func() {
		acked := make([]bool, len(msgs))
		for i, m := range msgs {
			select {
			case <-m.Acked():
				acked[i] = true
			case <-m.Nacked():
			case <-ctx.Done():
				for j, m := range msgs[i:] {
					select {
					case <-m.Acked():
						acked[i+j] = true
					default:
					}
				}
				b.Settle(acked)
				return
			}
		}
		b.Settle(acked)
	}()
	return msgs
}

// FromMessages wraps watermill messages in a Batch, for a subscriber that
// hands out messages: positions are read from their metadata (see
// schemas.PositionOf), Message returns a copy, and Settle acks or nacks
// each message, in order.
func FromMessages(msgs []*message.Message) *Batch {
	records := make([]Record, len(msgs))
	for i, m := range msgs {
		records[i].Payload = m.Payload
		records[i].Position, records[i].HasPosition = schemas.PositionOf(m.Metadata)
	}
	return NewBatch(records, messages(msgs), func(acked []bool) {
		for i, m := range msgs {
			if acked[i] {
				m.Ack()
			} else {
				m.Nack()
			}
		}
	})
}

// messages is the Source of a batch made of watermill messages.
type messages []*message.Message

func (ms messages) Metadata(i int, key string) string { return ms[i].Metadata.Get(key) }

func (ms messages) Message(i int) *message.Message {
	c := ms[i].Copy()
	c.SetContext(ms[i].Context())
	return c
}
