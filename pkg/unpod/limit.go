package unpod

import (
	"golang.org/x/time/rate"
)

// newLimiter returns the client-side rate limit: at most perSecond
// requests a second, with burst of them allowed back to back. A rate <= 0
// disables it.
func newLimiter(perSecond float64, burst int) *rate.Limiter {
	if perSecond <= 0 {
		return rate.NewLimiter(rate.Inf, max(burst, 1))
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))
}
