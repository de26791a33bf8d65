package audit

import (
	"fmt"
	"strings"
	"time"
)

// Window is one audited slice of creation_time, [Start, End), in UTC.
type Window struct {
	Start, End time.Time
}

// Steps an audit may use.
const (
	Hour = time.Hour
	Day  = 24 * time.Hour
)

// ParseStep reads the --by flag: "day" or "hour".
func ParseStep(s string) (time.Duration, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "day", "days", "d":
		return Day, nil
	case "hour", "hours", "h":
		return Hour, nil
	}
	return 0, fmt.Errorf("%q: want day or hour", s)
}

// Windows splits [from, to) into whole windows of step (Hour or Day) in
// UTC: from is moved back to the start of its window and to forward to the
// end of its window, so a partial day is audited whole. Only windows that
// end at or before closedBefore are returned; open counts the others,
// which are not audited yet.
func Windows(from, to, closedBefore time.Time, step time.Duration) (closed []Window, open int, err error) {
	if step != Hour && step != Day {
		return nil, 0, fmt.Errorf("audit: step %s: want an hour or a day", step)
	}
	if !from.Before(to) {
		return nil, 0, fmt.Errorf("audit: start %s is not before end %s", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	// time.Truncate counts from the zero time, a UTC midnight, so it
	// aligns on UTC hours and days whatever the location of from.
	for s := from.UTC().Truncate(step); s.Before(to); s = s.Add(step) {
		w := Window{Start: s, End: s.Add(step)}
		if w.End.After(closedBefore) {
			open++
			continue
		}
		closed = append(closed, w)
	}
	return closed, open, nil
}

// Locate returns the index in ws of the window holding t, or -1. ws must be
// contiguous windows of one step, as Windows returns them.
func Locate(ws []Window, t time.Time) int {
	if len(ws) == 0 || t.Before(ws[0].Start) || !t.Before(ws[len(ws)-1].End) {
		return -1
	}
	step := ws[0].End.Sub(ws[0].Start)
	return int(t.Sub(ws[0].Start) / step)
}

// Label names w in the table: the date for a day, the hour otherwise.
func (w Window) Label() string {
	if w.End.Sub(w.Start) == Day && w.Start.Equal(w.Start.Truncate(Day)) {
		return w.Start.Format(time.DateOnly)
	}
	return w.Start.Format("2006-01-02T15:04Z")
}
