package storage

import (
	"sort"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// row is one event to write, with its index in the batch it came in.
type row struct {
	idx int
	ev  *schemas.CallEvent
}

// supersedes reports whether a replaces b under the upsert rule: a higher
// revision wins; on equal revisions the greater event_id (byte order) wins,
// so any delivery order converges on the same row. The SQL upserts apply the
// same rule.
func supersedes(a, b *schemas.CallEvent) bool {
	if a.Revision != b.Revision {
		return a.Revision > b.Revision
	}
	return a.EventID > b.EventID
}

// latestPerKey keeps, for each call_key, only the event that supersedes the
// others in the batch, sorted by call_key. A multi-row PostgreSQL upsert
// cannot touch one key twice, and a fixed key order means two concurrent
// batches lock rows in the same order and cannot deadlock.
func latestPerKey(batch []consumers.Delivery) []row {
	best := make(map[string]int, len(batch))
	out := make([]row, 0, len(batch))
	for i := range batch {
		ev := &batch[i].Event
		if j, ok := best[ev.CallKey]; ok {
			if supersedes(ev, out[j].ev) {
				out[j] = row{idx: i, ev: ev}
			}
			continue
		}
		best[ev.CallKey] = len(out)
		out = append(out, row{idx: i, ev: ev})
	}
	sortByKey(out)
	return out
}

// allRows returns every event of the batch, sorted by call_key (stable, so
// batch order within a key).
func allRows(batch []consumers.Delivery) []row {
	out := make([]row, len(batch))
	for i := range batch {
		out[i] = row{idx: i, ev: &batch[i].Event}
	}
	sortByKey(out)
	return out
}

func sortByKey(rows []row) {
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].ev.CallKey < rows[j].ev.CallKey })
}

// rawJSON returns the raw record as text; an absent one is stored as JSON
// null so the column stays valid JSON.
func rawJSON(ev *schemas.CallEvent) string {
	if len(ev.Raw) == 0 {
		return "null"
	}
	return string(ev.Raw)
}
