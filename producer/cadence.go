package producer

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Adaptive polling. A call's freshness (visible in the API to on the
// topic) is at most the settle lag plus the wait between two polls plus
// the read, so the wait is what polling tunes:
//
//   - an organization whose last poll published something, or that is
//     still catching up, is polled again after poll_interval;
//   - one whose polls find nothing waits twice as long after each empty
//     poll, up to idle_poll_interval: a quiet night costs a tenth of the
//     requests of a busy hour, and the first call after it still arrives
//     within idle_poll_interval;
//   - whatever the above says, an organization spends at most
//     org_request_budget requests an hour: a token bucket of that rate,
//     holding a quarter of an hour of requests, so a catch-up after a
//     downtime is read at once and only sustained polling is slowed.
//
// The API client's rate limit (unpod.rate_limit, for all organizations of
// a process together) stays the ceiling: a poll that would exceed it waits
// in the client.

// cadence decides how long an organization waits before its next poll.
// Its times are on the producer's clock.
type cadence struct {
	min, idle time.Duration
	budget    *rate.Limiter // nil: no budget
	empty     int           // consecutive polls that published nothing
}

// pollOutcome is what one poll of an organization did.
type pollOutcome struct {
	requests   int  // API requests sent
	published  int  // events acknowledged
	catchingUp bool // rung 0 still lags by more than the idle interval
	failed     bool // the poll ended in an error (the backoff decides then)
}

func newCadence(cfg Config, now time.Time) *cadence {
	c := &cadence{min: cfg.PollInterval, idle: max(cfg.IdlePollInterval, cfg.PollInterval)}
	if cfg.OrgRequestBudget > 0 {
		perSecond := float64(cfg.OrgRequestBudget) / time.Hour.Seconds()
		burst := max(1, cfg.OrgRequestBudget/4)
		c.budget = rate.NewLimiter(rate.Limit(perSecond), burst)
		c.budget.AllowN(now, 0) // start the bucket full at now, on this clock
	}
	return c
}

// next returns the wait after a poll that ended at now with outcome o.
func (c *cadence) next(now time.Time, o pollOutcome) time.Duration {
	wait := c.min
	switch {
	case o.failed:
		c.empty = 0
	case o.published > 0 || o.catchingUp:
		c.empty = 0
	default:
		c.empty++
		for i := 0; i < c.empty && wait < c.idle; i++ {
			wait *= 2
		}
		wait = min(wait, c.idle)
	}
	if c.budget != nil && o.requests > 0 {
		n := min(o.requests, c.budget.Burst())
		if r := c.budget.ReserveN(now, n); r.OK() {
			wait = max(wait, r.DelayFrom(now))
		}
	}
	return wait
}

// activity counts, per organization, the requests sent and the events
// published since the organization's last poll ended, for its cadence.
type activity struct {
	mu    sync.Mutex
	byOrg map[string]*pollOutcome
}

func (a *activity) add(org string, requests, published int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byOrg == nil {
		a.byOrg = map[string]*pollOutcome{}
	}
	o, ok := a.byOrg[org]
	if !ok {
		o = &pollOutcome{}
		a.byOrg[org] = o
	}
	o.requests += requests
	o.published += published
}

// take returns org's counts and starts them again at zero.
func (a *activity) take(org string) pollOutcome {
	a.mu.Lock()
	defer a.mu.Unlock()
	o, ok := a.byOrg[org]
	if !ok {
		return pollOutcome{}
	}
	out := *o
	*o = pollOutcome{}
	return out
}

// pollOutcome collects what the poll of org that just ended did.
func (p *Producer) pollOutcome(org string, err error) pollOutcome {
	o := p.act.take(org)
	o.failed = err != nil
	cp := p.checkpoint(org)
	lag := p.now().Sub(cp.Rungs[0].Frontier) - p.cfg.SettleLag
	o.catchingUp = lag > max(p.cfg.IdlePollInterval, p.cfg.PollInterval)
	return o
}
