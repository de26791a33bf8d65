// Package retryafter reads the HTTP Retry-After header. It is the one
// Retry-After parser of the project: the Unpod API client and the webhook
// deliverer both honour what a server asks for, by the same rules.
package retryafter

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Max caps what Parse returns: a server asking for more than a day is taken
// to mean a day, not ignored. Callers cap further with their own settings.
const Max = 24 * time.Hour

// Parse reads a Retry-After header (RFC 9110 section 10.2.3) in either
// form, delay-seconds or an HTTP date, relative to now. ok is false when
// the header is absent or unusable (not a number or a date, or a negative
// number); a date in the past is a wait of 0, and a wait over Max is capped
// at it.
func Parse(h string, now time.Time) (wait time.Duration, ok bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(h, 64); err == nil {
		if secs != secs || secs < 0 {
			return 0, false
		}
		if secs >= Max.Seconds() {
			return Max, true
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(t.Sub(now), 0), Max), true
	}
	return 0, false
}
