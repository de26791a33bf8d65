package unpod

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinel errors, one per status class the API documents. An *APIError
// unwraps to the one matching its status, so callers can write
// errors.Is(err, unpod.ErrUnauthorized).
var (
	ErrBadRequest   = errors.New("unpod: bad request (400)")
	ErrUnauthorized = errors.New("unpod: invalid or missing token (401)")
	ErrForbidden    = errors.New("unpod: organization handle not allowed (403)")
	ErrNotFound     = errors.New("unpod: organization not found (404)")
	ErrRateLimited  = errors.New("unpod: rate limited (429)")
	ErrServer       = errors.New("unpod: server error (5xx)")
	ErrUnexpected   = errors.New("unpod: unexpected status")

	// ErrRedirect is a 3xx answer: the client follows no redirect (see the
	// package documentation), so it is permanent until base_url is fixed.
	ErrRedirect = errors.New("unpod: redirect refused")
	// ErrPastLastPage is a 404 for a page after the first that does not
	// name the organization: the data ended earlier than an earlier page's
	// count said. It is not permanent and not retried: read the window
	// again.
	ErrPastLastPage = errors.New("unpod: page past the end of the data (404)")
	// ErrBodyTooLarge is a response body over Config.MaxBodyBytes. It is
	// not retried: the same request would get the same body; ask for a
	// smaller page.
	ErrBodyTooLarge = errors.New("unpod: response body too large")
)

// APIError is a non-2xx answer from the API. It never holds the token: the
// token travels only in the Authorization header, which is not recorded.
type APIError struct {
	Status     int           // HTTP status code
	Message    string        // the API's "message" (or a short body excerpt)
	Method     string        // request method
	URL        string        // request URL, including the query; never the token
	Org        string        // the Org-Handle sent, if any
	RetryAfter time.Duration // from a Retry-After header (capped at retryafter.Max), 0 when absent
	// PastLastPage marks a 404 for a page after the first whose message
	// does not name the organization; it unwraps to ErrPastLastPage.
	PastLastPage bool
}

// Error implements error.
func (e *APIError) Error() string {
	org := ""
	if e.Org != "" {
		org = " (org " + e.Org + ")"
	}
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("unpod: %s %s%s: %d: %s", e.Method, e.URL, org, e.Status, msg)
}

// Unwrap returns the sentinel error matching the status.
func (e *APIError) Unwrap() error {
	switch {
	case e.Status >= 300 && e.Status <= 399:
		return ErrRedirect
	case e.PastLastPage:
		return ErrPastLastPage
	case e.Status == http.StatusBadRequest:
		return ErrBadRequest
	case e.Status == http.StatusUnauthorized:
		return ErrUnauthorized
	case e.Status == http.StatusForbidden:
		return ErrForbidden
	case e.Status == http.StatusNotFound:
		return ErrNotFound
	case e.Status == http.StatusTooManyRequests:
		return ErrRateLimited
	case e.Status >= 500:
		return ErrServer
	}
	return ErrUnexpected
}

// IsPermanent reports whether err means retrying the same request cannot
// help until an operator acts: a refused redirect (3xx), 400, 401, 403 and
// 404 (and any other 4xx except 429), but not a 404 past the last page
// (ErrPastLastPage). A poller should stop polling that org and report it.
func IsPermanent(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) || ae.PastLastPage {
		return false
	}
	return ae.Status >= 300 && ae.Status < 500 && ae.Status != http.StatusTooManyRequests
}

// IsAuth reports whether err is a 401 or 403: the token or the org handle is
// wrong, which an operator has to fix.
func IsAuth(err error) bool {
	return errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden)
}

// IsRetryable reports whether the client would retry err: 5xx, 429, a
// malformed body, or a network error or timeout.
func IsRetryable(err error) bool {
	if err == nil || IsPermanent(err) || errors.Is(err, ErrBodyTooLarge) || errors.Is(err, ErrPastLastPage) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusTooManyRequests || ae.Status >= 500
	}
	// Everything else is transport trouble, a per-attempt timeout or a body
	// cut short, unless the caller gave up.
	return !errors.Is(err, context.Canceled)
}

// RetryAfter returns how long the server asked the client to wait (a 429 or
// 503 with Retry-After), or 0. A poller can pause the org that long.
func RetryAfter(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}
