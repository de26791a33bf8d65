package producer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/callstream/callstream/pkg/unpod"
)

// BackfillProgress is reported after every page of a backfill.
type BackfillProgress struct {
	Org                    string
	Total                  int // records in the range when it started (the API's count)
	Read                   int // records read so far, repeats included
	Published              int64
	Duplicates             int64
	Window, Windows        int // current window (1-based) and their number
	WindowStart, WindowEnd time.Time
}

// timeIndexed is an EventLog that can find offsets by record time.
type timeIndexed interface {
	OffsetsAt(ctx context.Context, t time.Time) (map[int]int64, error)
}

// clockSkew bounds how far the API's clock may run ahead of the bus's
// record timestamps when looking offsets up by time.
const clockSkew = 15 * time.Minute

// Backfill reads the creation times [from, to) of org once, window by
// window, through the same dedup gate as Run: calls already published are
// dropped, changed ones become updates. With Kafka, the gate first learns
// every event published since from (an event is never published before its
// call is created). Backfill saves no checkpoint. Backfilling an org that a
// running producer polls over the same range breaks the one active producer
// per org precondition.
func (p *Producer) Backfill(ctx context.Context, org string, from, to time.Time, progress func(BackfillProgress)) error {
	if !from.Before(to) {
		return fmt.Errorf("producer: backfill of %s: --from %s is not before --to %s", org, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if p.deps.EventLog == nil {
		if err := p.restore(ctx); err != nil {
			return err
		}
	} else {
		ti, ok := p.deps.EventLog.(timeIndexed)
		if !ok {
			return errors.New("producer: backfill needs an event log that can look offsets up by time")
		}
		offs, err := ti.OffsetsAt(ctx, from.Add(-clockSkew))
		if err != nil {
			return err
		}
		start := time.Now()
		n, err := p.readBack(ctx, offs, org)
		if err != nil {
			return fmt.Errorf("producer: backfill of %s: read back %s: %w", org, p.deps.Topic, err)
		}
		p.log.Info("dedup memory loaded for the backfill", "events", n, "took", time.Since(start).Round(time.Millisecond).String())
	}
	first, err := p.deps.Source.CallLogs(ctx, unpod.Query{Org: org, Page: 1, PageSize: 1, Start: from, End: to})
	if err != nil {
		return fmt.Errorf("producer: backfill of %s: count records: %w", org, err)
	}
	var windows []Window
	for s := from; s.Before(to); s = s.Add(p.cfg.MaxWindow) {
		windows = append(windows, Window{Start: s, End: minTime(s.Add(p.cfg.MaxWindow), to)})
	}
	pr := BackfillProgress{Org: org, Total: first.Count, Windows: len(windows)}
	pub0, dup0 := p.published.Load(), p.dups.Load()
	p.pageHook = func(n int) {
		pr.Read += n
		pr.Published, pr.Duplicates = p.published.Load()-pub0, p.dups.Load()-dup0
		if progress != nil {
			progress(pr)
		}
	}
	defer func() { p.pageHook = nil }()
	for i, w := range windows {
		pr.Window, pr.WindowStart, pr.WindowEnd = i+1, w.Start, w.End
		if err := p.readWindow(ctx, org, w); err != nil {
			return fmt.Errorf("producer: backfill of %s stopped in window %d of %d: %w", org, i+1, len(windows), err)
		}
	}
	// Batches are acknowledged after their page was counted; report the
	// final totals.
	pr.Published, pr.Duplicates = p.published.Load()-pub0, p.dups.Load()-dup0
	if progress != nil {
		progress(pr)
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
