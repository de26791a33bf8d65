package lake

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// writeForgotten writes n events of one org in files of four rows with a
// budget so small that the lake forgets every renamed file's offsets (no
// file stays open to hold the floor back), as on a long run.
func writeForgotten(t *testing.T, n int) (*Lake, []consumers.Delivery) {
	t.Helper()
	l := newLake(t, Config{MaxBufferedRows: 8})
	events := genEvents(n, []string{"unpod"}, 1, base, 31)
	sameHour(events)
	ds := deliveriesOf(events)
	for i := 0; i < len(ds); i += 4 {
		handleAll(t, context.Background(), l, ds[i:i+4])
	}
	l.mu.Lock()
	forgot, floor := l.parts[partKey{}].forgotFiles, l.parts[partKey{}].floor
	l.mu.Unlock()
	if !forgot || floor < int64(n/2) {
		t.Fatalf("forgotFiles %v, floor %d: nothing was forgotten, the test proves nothing", forgot, floor)
	}
	return l, ds
}

// TestRedeliverFileEdges redelivers, one at a time, the last and first
// offsets of files the lake forgot: each must be found on disk and
// skipped. The last offset of a file is the edge where "this file holds
// nothing at or above the offset" must still read the file.
func TestRedeliverFileEdges(t *testing.T) {
	l, ds := writeForgotten(t, 40)
	// Files hold offsets 0-3, 4-7, ...; highest first, as the floor only
	// ever moves down.
	for _, off := range []int{39, 31, 28, 27, 7, 4, 3, 0} {
		handleAll(t, context.Background(), l, ds[off:off+1])
	}
	events := make([]schemas.CallEvent, 0, len(ds))
	for _, d := range ds {
		events = append(events, d.Event)
	}
	checkExactlyOnce(t, readLake(t, l.cfg.Dir), events)
	if got := testutil.ToFloat64(l.metrics.skipped); got != 8 {
		t.Fatalf("rows_skipped_total %v, want the 8 redeliveries", got)
	}
}

// TestIndexStaysBounded: on a long run the offsets and files the lake
// remembers stay within a few budgets, however many events went by.
func TestIndexStaysBounded(t *testing.T) {
	l, _ := writeForgotten(t, 2000)
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.parts[partKey{}]
	budget := l.cfg.MaxBufferedRows
	if len(p.covered) > 8*budget || len(p.files) > 8*budget/l.cfg.MaxFileRows {
		t.Fatalf("after 2,000 events the lake remembers %d offsets and %d files; want at most %d and %d",
			len(p.covered), len(p.files), 8*budget, 8*budget/l.cfg.MaxFileRows)
	}
}

// TestRestartRedeliversFromMidFile: after a restart the lake knows the
// files on disk only by name; a redelivery that starts inside one of them
// must still find its offsets there (the committed offset can fall
// anywhere in a file written before the crash).
func TestRestartRedeliversFromMidFile(t *testing.T) {
	dir := t.TempDir()
	events := genEvents(30, []string{"unpod"}, 1, base, 32)
	sameHour(events)
	ds := deliveriesOf(events)
	l1, err := New(Config{Dir: dir, MaxFileRows: 10, MaxBufferedRows: 1000}, consumers.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	handleAll(t, context.Background(), l1, ds[:20]) // files of offsets 0-9 and 10-19
	l1.Close()

	l2 := newLake(t, Config{Dir: dir, MaxFileRows: 10, MaxBufferedRows: 1000})
	handleAll(t, context.Background(), l2, ds[15:]) // from the middle of the second file
	checkExactlyOnce(t, readLake(t, dir), events)
}
