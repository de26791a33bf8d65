package producer

import (
	"context"
	"fmt"
	"time"

	"github.com/callstream/callstream/pkg/unpod"
)

// The recent re-read. A record that appears or changes after its
// creation_time (a late record, an update, a page shift) is found by the
// first read of its slice after that, and the rescan ladder reads a slice
// next only when it is older by a rung's age: minutes. So at every poll the
// producer first reads page 1 of the last recent_rescan before the settle
// lag: the API lists newest first, so that one request shows the newest
// page_size records of the span, and a record that turned up since the
// last poll reaches the topic now instead of at the next rung. The gate
// drops the records already published, as at every re-read.
//
// When the span's records fit in that page (count no more than the page
// and every counted record seen), the read is a complete read of the span
// at this poll's time: it moves rung 0 to its target and serves every rung
// whose frontier it covers (Checkpoint.Done), so a quiet organization pays
// one request a poll for rung 0 and all the rungs younger than
// recent_rescan. A busier one pays one request more, and its rungs read
// as before: the page was a head start, not a read of the span.
//
// The re-read is skipped while rung 0 is catching up (its frontier older
// than the span): the ladder reads that backlog window by window, oldest
// first, and the re-read resumes once it is done. It never starts below
// the lowest frontier, where the gate may have forgotten what was
// published.

// recentWindow returns the span re-read at now, or false when there is
// none (disabled, rung 0 catching up or already at its target).
func recentWindow(c *Checkpoint, now time.Time, settle, span time.Duration) (Window, bool) {
	if span <= 0 {
		return Window{}, false
	}
	target := now.Add(-settle).Truncate(time.Millisecond)
	start := target.Add(-span)
	if c.Rungs[0].Frontier.Before(start) || !target.After(c.Rungs[0].Frontier) {
		return Window{}, false
	}
	if low := c.Low(); start.Before(low) {
		start = low
	}
	return Window{Rung: 0, Start: start, End: target}, true
}

// readRecent reads page 1 of w, publishes what passes the gate, and
// reports whether that page held all of w.
func (p *Producer) readRecent(ctx context.Context, org string, w Window) (bool, error) {
	defer p.lockOrg(org)()
	q := unpod.Query{Org: org, Page: 1, PageSize: p.cfg.PageSize, Start: w.Start, End: w.End}
	p.act.add(org, 1, 0)
	pg, err := p.deps.Source.CallLogs(ctx, q)
	if err != nil {
		return false, fmt.Errorf("producer: org %s recent re-read [%s, %s) page 1: %w",
			org, w.Start.Format(time.RFC3339Nano), w.End.Format(time.RFC3339Nano), err)
	}
	n := len(pg.Records) + len(pg.Invalid)
	p.read.Add(int64(n))
	p.m.recordsRead.WithLabelValues(org).Add(float64(n))
	p.invalid.Add(int64(len(pg.Invalid)))
	p.m.invalid.WithLabelValues(org).Add(float64(len(pg.Invalid)))
	seen := map[string]struct{}{}
	b, dead := p.gate(org, w, identifyPage(org, pg), seen, map[uint64]struct{}{})
	pub := p.newPublishQueue(ctx, org)
	pub.submit(b)
	if err := pub.wait(); err != nil {
		return false, err
	}
	complete := pg.Count <= n && len(seen)+dead >= pg.Count
	result := "recent_partial"
	if complete {
		result = "recent_complete"
	}
	p.m.windows.WithLabelValues(org, result).Inc()
	return complete, nil
}

// readRecentIfDue runs the recent re-read of a poll at now and, when it
// covered its whole span, counts it as the read of that span.
func (p *Producer) readRecentIfDue(ctx context.Context, org string, now time.Time) error {
	cp := p.checkpoint(org)
	w, ok := recentWindow(cp, now, p.cfg.SettleLag, p.cfg.RecentRescan)
	if !ok {
		return nil
	}
	if err := p.sampleIfDue(ctx, org, cp); err != nil {
		return err
	}
	complete, err := p.readRecent(ctx, org, w)
	if err != nil || !complete {
		return err
	}
	p.update(org, func(c *Checkpoint) { c.Done(w, now, p.cfg.SettleLag) })
	return nil
}
