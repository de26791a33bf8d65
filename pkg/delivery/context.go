// Package delivery holds what the project's watermill subscribers
// (pkg/kafkabus, pkg/sqlitebus) share about one delivered message.
package delivery

import (
	"context"
	"sync"
	"time"
)

// Context is the context of one delivered message: it carries the Subscribe
// context's values and is canceled when the message is acked, nacked or its
// subscription stops. Unlike context.WithCancel it does not register with a
// parent, which matters at one context per message.
type Context struct {
	context.Context
	done chan struct{}
	once sync.Once
}

// NewContext returns a Context with the values of values, not yet canceled.
func NewContext(values context.Context) *Context {
	return &Context{Context: values, done: make(chan struct{})}
}

// Done is closed by Cancel.
func (c *Context) Done() <-chan struct{} { return c.done }

// Err is context.Canceled once Cancel was called, else nil.
func (c *Context) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

// Deadline reports none: the message lives until acked, whatever the
// Subscribe context's deadline (whose expiry stops the subscription and so
// cancels this context anyway).
func (c *Context) Deadline() (time.Time, bool) { return time.Time{}, false }

// Cancel cancels the context; later calls do nothing.
func (c *Context) Cancel() { c.once.Do(func() { close(c.done) }) }
