// Package membus is an in-process watermill Publisher and Subscriber for
// embedded mode that keeps publish order per subscriber.
//
// watermill's GoChannel hands each message to each subscriber from a
// goroutine of its own, so a subscriber sees a burst of messages in random
// order; consumers on event time (alerting) then count a catch-up as late.
// Here every subscription has a FIFO queue: messages come out in the order
// they were published, without waiting for the previous one's ack, so batch
// sinks can hold many at once (the consumer runtime bounds how many). A
// nacked message is delivered again. A full queue blocks Publish: the
// producer slows down instead of messages being dropped. Like a
// non-persistent GoChannel, a subscriber sees only what is published after
// it subscribed, and nothing survives the process.
package membus

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Config sizes the bus.
type Config struct {
	// Buffer is how many messages each subscription queues before Publish
	// blocks. Zero means 10,000.
	Buffer int
}

// ErrClosed is returned by Publish and Subscribe after Close.
var ErrClosed = errors.New("membus: closed")

// Bus is an ordered in-process pub/sub. It is safe for concurrent use.
type Bus struct {
	buffer int

	mu     sync.RWMutex
	subs   map[string][]*subscription
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// New returns an empty bus.
func New(cfg Config) *Bus {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 10000
	}
	return &Bus{buffer: cfg.Buffer, subs: map[string][]*subscription{}, done: make(chan struct{})}
}

type subscription struct {
	queue chan *message.Message
	out   chan *message.Message
	stop  chan struct{} // closed when the subscription ends
}

// Publish queues msgs, in order, for every current subscriber of topic. It
// blocks while a subscriber's queue is full.
func (b *Bus) Publish(topic string, msgs ...*message.Message) error {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ErrClosed
	}
	subs := append([]*subscription(nil), b.subs[topic]...)
	b.mu.RUnlock()
	for _, m := range msgs {
		for _, s := range subs {
			select {
			case s.queue <- m.Copy():
			case <-s.stop: // the subscriber left: nothing to deliver
			case <-b.done:
				return ErrClosed
			}
		}
	}
	return nil
}

// Subscribe returns the messages published to topic from now on, in publish
// order (a nacked message comes again, after those already handed out). The
// channel closes when ctx is done or the bus is closed.
func (b *Bus) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	s := &subscription{
		queue: make(chan *message.Message, b.buffer),
		out:   make(chan *message.Message),
		stop:  make(chan struct{}),
	}
	b.subs[topic] = append(b.subs[topic], s)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.deliver(ctx, s)
		b.remove(topic, s)
	}()
	return s.out, nil
}

// deliver hands out queued messages in order and watches each for a nack.
func (b *Bus) deliver(ctx context.Context, s *subscription) {
	var pending sync.WaitGroup
	redeliver := make(chan *message.Message)
	defer func() {
		close(s.stop)
		pending.Wait()
		close(s.out)
	}()
	send := func(m *message.Message) bool {
		select {
		case s.out <- m:
		case <-ctx.Done():
			return false
		case <-b.done:
			return false
		}
		pending.Add(1)
		go func() {
			defer pending.Done()
			select {
			case <-m.Acked():
			case <-m.Nacked():
				select {
				case redeliver <- m.Copy():
				case <-s.stop:
				}
			case <-s.stop:
			}
		}()
		return true
	}
	for {
		var m *message.Message
		select {
		case m = <-redeliver:
		default:
			select {
			case m = <-redeliver:
			case m = <-s.queue:
			case <-ctx.Done():
				return
			case <-b.done:
				return
			}
		}
		if !send(m) {
			return
		}
	}
}

func (b *Bus) remove(topic string, s *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	subs := b.subs[topic]
	for i, x := range subs {
		if x == s {
			b.subs[topic] = append(subs[:i:i], subs[i+1:]...)
			break
		}
	}
}

// Close ends every subscription; messages not yet acknowledged are lost,
// as in any in-process bus.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.done)
	b.mu.Unlock()
	b.wg.Wait()
	return nil
}

// String names the bus in logs.
func (b *Bus) String() string { return fmt.Sprintf("membus(buffer %d)", b.buffer) }
