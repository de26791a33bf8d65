package producer

import (
	"context"
	"slices"
	"sync"
	"time"
)

// orgList is the set of organizations to poll, which discovery changes
// while the producer runs.
type orgList struct {
	mu      sync.Mutex
	orgs    []string
	changed chan struct{} // closed and replaced at every change
}

// get returns the organizations and a channel closed at the next change.
func (l *orgList) get() ([]string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.orgs, l.changed
}

// set replaces the organizations and reports whether they changed.
func (l *orgList) set(orgs []string) bool {
	orgs = slices.Compact(slices.Sorted(slices.Values(orgs)))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	if slices.Equal(l.orgs, orgs) {
		return false
	}
	l.orgs = orgs
	close(l.changed)
	l.changed = make(chan struct{})
	return true
}

// discover reads the organizations endpoint again every
// discovery_interval until ctx ends, when no org_handles are configured:
// organizations that appear start being polled, those that vanish stop.
// A failed read keeps the list as it was.
func (p *Producer) discover(ctx context.Context) {
	if len(p.cfg.Orgs) > 0 {
		return
	}
	t := time.NewTicker(p.clock.Wall(p.cfg.DiscoveryInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		list, err := p.deps.Source.Organizations(ctx)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("listing organizations failed; keeping the current list", "err", err.Error())
				p.om.discoveries.WithLabelValues("error").Inc()
			}
			continue
		}
		var orgs []string
		for _, o := range list {
			if o.Handle != "" {
				orgs = append(orgs, o.Handle)
			}
		}
		if len(orgs) == 0 {
			// An empty answer is more likely a fault than every
			// organization gone at once.
			p.log.Warn("the API lists no organization; keeping the current list")
			p.om.discoveries.WithLabelValues("empty").Inc()
			continue
		}
		before, _ := p.known.get()
		if p.known.set(orgs) {
			p.log.Info("organization list changed", "orgs", len(orgs),
				"added", minus(orgs, before), "removed", minus(before, orgs))
			p.om.discoveries.WithLabelValues("changed").Inc()
		} else {
			p.om.discoveries.WithLabelValues("unchanged").Inc()
		}
	}
}

// minus returns the elements of a not in b.
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
