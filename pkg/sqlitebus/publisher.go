package sqlitebus

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/schemas"
)

var _ message.Publisher = (*Publisher)(nil)

// Publisher is the watermill message.Publisher of a Bus. Closing it does
// not close the Bus.
type Publisher struct {
	b *Bus

	mu      sync.Mutex
	closed  bool
	pending sync.WaitGroup
}

// Publisher returns a new Publisher on b.
func (b *Bus) Publisher() *Publisher {
	p := &Publisher{b: b}
	if err := b.register(p, nil); err != nil {
		p.closed = true
	}
	return p
}

// row is a message as stored.
type row struct {
	uuid     string
	key      string
	hasKey   bool
	md       map[string]string // every metadata entry but the key
	metadata []byte            // md as a JSON object; nil if empty
	payload  []byte
}

// messageSize is what MaxMessageBytes limits.
func messageSize(m *message.Message) int {
	n := len(m.Payload) + len(m.UUID)
	for k, v := range m.Metadata {
		n += len(k) + len(v)
	}
	return n
}

func toRow(m *message.Message) (row, error) {
	r := row{uuid: m.UUID, payload: m.Payload}
	if r.payload == nil {
		r.payload = []byte{}
	}
	md := make(map[string]string, len(m.Metadata))
	for k, v := range m.Metadata {
		if k == schemas.KeyMetadata {
			r.key, r.hasKey = v, true
			continue
		}
		md[k] = v
	}
	r.md = md
	if len(md) > 0 {
		b, err := json.Marshal(md)
		if err != nil {
			return row{}, err
		}
		r.metadata = b
	}
	return r, nil
}

// Publish appends msgs to topic (creating it if needed) in one
// transaction, and returns once it is committed to disk (WAL,
// synchronous=FULL). Either all msgs are stored, in order, with
// consecutive offsets, or none is. A message larger than MaxMessageBytes
// fails the whole call with an error wrapping schemas.ErrTooLarge, before
// anything is written.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if err := validTopic(topic); err != nil {
		return err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("sqlitebus: publish to %s: %w", topic, ErrClosed)
	}
	p.pending.Add(1)
	p.mu.Unlock()
	defer p.pending.Done()
	if len(msgs) == 0 {
		return nil
	}
	limit := p.b.cfg.MaxMessageBytes
	rows := make([]row, len(msgs))
	for i, m := range msgs {
		if n := messageSize(m); n > limit {
			p.b.metrics.errors.WithLabelValues("too_large").Inc()
			return fmt.Errorf("sqlitebus: publish to %s: message %d (uuid %s) is %d bytes, over the limit of %d: %w",
				topic, i, m.UUID, n, limit, schemas.ErrTooLarge)
		}
		r, err := toRow(m)
		if err != nil {
			return fmt.Errorf("sqlitebus: publish to %s: message %d (uuid %s): encode metadata: %w", topic, i, m.UUID, err)
		}
		rows[i] = r
	}
	err := p.b.w.do(func(tx *txn) error {
		tp, err := tx.topic(topic)
		if err != nil {
			return err
		}
		return tx.appendRows(tp, rows)
	})
	if err != nil {
		p.b.metrics.errors.WithLabelValues("publish").Inc()
		return fmt.Errorf("sqlitebus: publish %d messages to %s: %w", len(msgs), topic, err)
	}
	p.b.metrics.published.WithLabelValues(topic).Add(float64(len(msgs)))
	return nil
}

// Close waits for the Publish calls under way; later calls fail with
// ErrClosed. The Bus stays open.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.pending.Wait()
	p.b.unregister(p, nil)
	return nil
}
