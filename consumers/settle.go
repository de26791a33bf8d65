package consumers

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// outcome is what became of one message of a batch.
type outcome struct {
	kind   outcomeKind
	reason error // why it was poisoned
}

type outcomeKind int

const (
	abandoned outcomeKind = iota // not done at shutdown: nacked, delivered again
	handled                      // the plug-in accepted it
	poisoned                     // it goes to the DLQ
)

// settle hands ds to the plug-in until each delivery is handled, poisoned
// or abandoned, and returns the outcomes, aligned with ds. See the error
// classes in errors.go: a permanent failure poisons its deliveries at once;
// a transient one is retried, with backoff and the lane paused, until it
// passes or shutdown begins; any other failure is retried Config.MaxRetries
// times, and then the deliveries still failing are split in halves until
// the one at fault is alone, which is poisoned after its own retries. The
// halves are tried once each: only a lone delivery earns its retries, so
// one poison message in a batch of n costs about 2·log2(n) extra attempts.
func (l *lane) settle(ds []Delivery) []outcome {
	out := make([]outcome, len(ds))
	if len(ds) == 0 {
		return out
	}
	which := make([]int, len(ds))
	for i := range which {
		which[i] = i
	}
	l.settleSome(ds, which, out, l.rt.cfg.MaxRetries)
	return out
}

func (l *lane) settleSome(ds []Delivery, which []int, out []outcome, retries int) {
	if len(which) == 1 {
		retries = l.rt.cfg.MaxRetries
	}
	wait := l.rt.cfg.newBackoff()
	failures := 0
	var buf []Delivery // for a subset of ds
	for len(which) > 0 {
		batch := ds
		if len(which) < len(ds) {
			// A subset (in order). All of them is the usual case, where a
			// copy would double what the runtime allocates per message.
			buf = buf[:0]
			for _, i := range which {
				buf = append(buf, ds[i])
			}
			batch = buf
		}
		err := l.call(batch)
		retry, last := l.classify(err, which, out)
		if len(retry) == 0 {
			l.pause(nil)
			return
		}
		which = retry
		l.m.attempts.Inc()
		if IsTransient(last) {
			l.pause(last)
		} else if failures++; failures > retries {
			l.pause(nil)
			if len(which) == 1 {
				out[which[0]] = outcome{kind: poisoned, reason: fmt.Errorf("plug-in %s failed %d times: %w", l.name, failures, last)}
				return
			}
			half := len(which) / 2
			l.settleSome(ds, which[:half], out, 0)
			l.settleSome(ds, which[half:], out, 0)
			return
		}
		if !sleep(l.intake, wait.NextBackOff()) {
			// Shutdown: what is left is delivered again next time.
			return
		}
	}
}

// classify records the outcome of one call for the deliveries which, and
// returns the ones to retry with the error that makes them retried: a
// transient one when every retried failure is transient.
func (l *lane) classify(err error, which []int, out []outcome) (retry []int, last error) {
	var items *ItemErrors
	switch {
	case err == nil:
		for _, i := range which {
			out[i] = outcome{kind: handled}
		}
		return nil, nil
	case errors.As(err, &items):
		allTransient := true
		for k, i := range which {
			ierr := (*items)[k]
			switch {
			case ierr == nil:
				out[i] = outcome{kind: handled}
			case IsPermanent(ierr):
				out[i] = outcome{kind: poisoned, reason: ierr}
			default:
				retry = append(retry, i)
				if last == nil || !IsTransient(ierr) {
					last = ierr
				}
				allTransient = allTransient && IsTransient(ierr)
			}
		}
		if !allTransient && IsTransient(last) {
			last = fmt.Errorf("some items failed for other reasons: %v", err)
		}
		return retry, last
	case IsPermanent(err):
		for _, i := range which {
			out[i] = outcome{kind: poisoned, reason: err}
		}
		return nil, nil
	default:
		return which, err
	}
}

// call runs the plug-in on one batch; a panic is an error of the batch.
func (l *lane) call(batch []Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			l.log.Error("consumer plug-in panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("plug-in %s panicked: %v", l.name, r)
		}
	}()
	return l.handle(l.work, batch)
}

// newBackoff paces retries: exponential with jitter from
// RetryInitialInterval up to RetryMaxInterval, without end.
func (c Config) newBackoff() backoff.BackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.RetryInitialInterval),
		backoff.WithMaxInterval(c.RetryMaxInterval),
		backoff.WithMaxElapsedTime(0),
	)
}

// sleep waits d, or returns false when ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
