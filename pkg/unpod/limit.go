package unpod

import (
	"context"
	"sync"
	"time"
)

// limiter spaces requests at most rate per second, letting burst go back to
// back. A rate <= 0 disables it.
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	slack    time.Duration // how far behind now `next` may lag: the burst
	next     time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	if rate <= 0 {
		return &limiter{}
	}
	iv := time.Duration(float64(time.Second) / rate)
	return &limiter{interval: iv, slack: time.Duration(burst-1) * iv}
}

// wait blocks until the caller may send, or ctx ends.
func (l *limiter) wait(ctx context.Context) error {
	if l.interval == 0 {
		return ctx.Err()
	}
	l.mu.Lock()
	now := time.Now()
	at := l.next
	if floor := now.Add(-l.slack); at.Before(floor) {
		at = floor
	}
	l.next = at.Add(l.interval)
	l.mu.Unlock()
	d := at.Sub(now)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
