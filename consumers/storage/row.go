package storage

import (
	"cmp"
	"slices"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// row is one event to write, with its index in the batch it came in.
type row struct {
	idx int
	ev  *schemas.CallEvent
}

// callRef names a row of call_logs: a call_key is unique only within its
// org (two orgs' APIs may hand out the same id).
type callRef struct{ org, key string }

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

// latestPerKey keeps, for each (org, call_key), only the event that
// supersedes the others in the batch, sorted by (org, call_key). A
// multi-row PostgreSQL upsert cannot touch one row twice, and a fixed key
// order means two concurrent batches lock rows in the same order and cannot
// deadlock.
func latestPerKey(batch []consumers.Delivery) []row {
	best := make(map[callRef]int, len(batch))
	out := make([]row, 0, len(batch))
	for i := range batch {
		ev := &batch[i].Event
		ref := callRef{ev.Org, ev.CallKey}
		if j, ok := best[ref]; ok {
			if supersedes(ev, out[j].ev) {
				out[j] = row{idx: i, ev: ev}
			}
			continue
		}
		best[ref] = len(out)
		out = append(out, row{idx: i, ev: ev})
	}
	sortByKey(out)
	return out
}

// allRows returns every event of the batch, sorted by (org, call_key)
// (stable, so batch order within a call).
func allRows(batch []consumers.Delivery) []row {
	out := make([]row, len(batch))
	for i := range batch {
		out[i] = row{idx: i, ev: &batch[i].Event}
	}
	sortByKey(out)
	return out
}

func sortByKey(rows []row) {
	slices.SortStableFunc(rows, func(a, b row) int {
		if c := cmp.Compare(a.ev.Org, b.ev.Org); c != 0 {
			return c
		}
		return cmp.Compare(a.ev.CallKey, b.ev.CallKey)
	})
}

// rawJSON returns the raw record as text; an absent one is stored as JSON
// null so the column stays valid JSON.
func rawJSON(ev *schemas.CallEvent) string {
	if len(ev.Raw) == 0 {
		return "null"
	}
	return string(ev.Raw)
}
