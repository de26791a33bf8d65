package consumers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"syscall"
)

// ItemErrors fails some items of a batch: the key is the index in the batch.
// The items not named succeeded.
type ItemErrors map[int]error

func (e *ItemErrors) Error() string {
	idx := make([]int, 0, len(*e))
	for i := range *e {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	parts := make([]string, 0, len(idx))
	for _, i := range idx {
		parts = append(parts, fmt.Sprintf("item %d: %v", i, (*e)[i]))
	}
	return fmt.Sprintf("%d of the batch failed: %s", len(idx), strings.Join(parts, "; "))
}

// Errors are classified by who is at fault, which decides what the runtime
// does with the messages that failed:
//
//   - Permanent: the message itself (it cannot be decoded, fails a sink's
//     constraint). It goes to the DLQ at once.
//   - Transient: a dependency (a database or an endpoint that is down, a
//     timeout). Nothing is dead-lettered: the runtime retries with backoff
//     for as long as it takes, holding the messages, and reports the
//     plug-in paused (not ready) meanwhile. Network errors count as
//     transient without being marked.
//   - Anything else: retried Config.MaxRetries times; a batch that still
//     fails is split to find the message at fault, which goes to the DLQ.

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err as one that retrying cannot fix: the message goes to
// the DLQ at once.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// transientError marks an error of a dependency, not of the message.
type transientError struct{ err error }

func (t transientError) Error() string { return t.err.Error() }
func (t transientError) Unwrap() error { return t.err }

// Transient marks err as a failure of a dependency that will pass (a
// database restarting, a connection refused): the runtime retries for as
// long as it takes and never dead-letters the message for it.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return transientError{err}
}

// IsTransient reports whether err is a dependency's failure that will pass:
// marked by Transient, or a network failure (refused, reset or timed-out
// connections, a connection cut mid-answer), or a deadline the plug-in set
// on its own call. A Permanent mark wins over everything.
func IsTransient(err error) bool {
	if err == nil || IsPermanent(err) {
		return false
	}
	var t transientError
	if errors.As(err, &t) {
		return true
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ETIMEDOUT) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded)
}
