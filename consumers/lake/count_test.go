package lake

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/audit"
	"github.com/callstream/callstream/schemas"
)

// TestCountCalls writes events (about one in ten a second revision of an
// earlier call) through the lake, with and without hour directories, and
// checks the audit's count per day and per hour against the events
// written; then deletes a file and checks that exactly the calls only it
// held are missing.
func TestCountCalls(t *testing.T) {
	for _, hourly := range []bool{false, true} {
		t.Run(map[bool]string{false: "days", true: "hours"}[hourly], func(t *testing.T) {
			l := newLake(t, Config{MaxFileRows: 300, HourPartition: hourly})
			orgs := []string{"acme", "globex"}
			events := genEvents(3000, orgs, 3, base, 5)
			var ds []consumers.Delivery
			for i, e := range events {
				ds = append(ds, delivery(e, i%3, int64(i/3)))
			}
			handleAll(t, context.Background(), l, ds)

			// From before the first call, and from within the calls (so the
			// first window holds some).
			for _, from := range []time.Duration{-4 * 24 * time.Hour, -2 * 24 * time.Hour} {
				for _, step := range []time.Duration{audit.Day, audit.Hour} {
					ws, _, err := audit.Windows(base.Add(from), base.Add(time.Hour), base.Add(48*time.Hour), step)
					if err != nil {
						t.Fatal(err)
					}
					for _, org := range orgs {
						want := distinctByWindow(events, org, ws, nil)
						if from > -3*24*time.Hour && want[0] == 0 {
							t.Fatalf("no call of %s in the first window %v: the case proves nothing", org, ws[0])
						}
						checkCounts(t, l.cfg.Dir, org, ws, want)
					}
				}
			}

			// A file disappears: the calls only it held are missing.
			files := readLake(t, l.cfg.Dir)
			gone := loneHolder(t, files)
			if err := os.Remove(filepath.Join(l.cfg.Dir, tableDir, gone.rel)); err != nil {
				t.Fatal(err)
			}
			left := map[string]bool{} // org/call_key still in some file
			for _, f := range files {
				if f.rel == gone.rel {
					continue
				}
				org := orgOfRel(t, f.rel)
				for _, r := range f.rows {
					left[org+"/"+r.CallKey] = true
				}
			}
			ws, _, _ := audit.Windows(base.Add(-4*24*time.Hour), base.Add(time.Hour), base.Add(48*time.Hour), audit.Hour)
			lost := 0
			for _, org := range orgs {
				want := distinctByWindow(events, org, ws, left)
				for i, n := range distinctByWindow(events, org, ws, nil) {
					lost += int(n - want[i])
				}
				checkCounts(t, l.cfg.Dir, org, ws, want)
			}
			if lost == 0 {
				t.Fatalf("deleting %s (%d rows) lost no call: the test proves nothing", gone.rel, len(gone.rows))
			}
			t.Logf("deleted %s: %d rows, %d calls missing", gone.rel, len(gone.rows), lost)
		})
	}
}

// loneHolder returns the file holding the most calls that no other file
// holds. Which file that is depends on how the flushes fell (a file can
// hold only later revisions of calls that other files also hold), so the
// file is chosen by what it holds, not by its place in the listing.
func loneHolder(t *testing.T, files []lakeFile) lakeFile {
	t.Helper()
	holders := map[string]int{} // org/call_key -> number of files holding it
	for _, f := range files {
		org := orgOfRel(t, f.rel)
		seen := map[string]bool{}
		for _, r := range f.rows {
			if k := org + "/" + r.CallKey; !seen[k] {
				seen[k] = true
				holders[k]++
			}
		}
	}
	best, bestN := -1, 0
	for i, f := range files {
		org := orgOfRel(t, f.rel)
		n := 0
		for _, r := range f.rows {
			if holders[org+"/"+r.CallKey] == 1 {
				n++
			}
		}
		if n > bestN {
			best, bestN = i, n
		}
	}
	if best < 0 {
		t.Fatalf("none of %d files holds a call alone: the test proves nothing", len(files))
	}
	return files[best]
}

// distinctByWindow counts the distinct call keys of org per window among
// events, keeping only those in keep when it is set.
func distinctByWindow(events []schemas.CallEvent, org string, ws []audit.Window, keep map[string]bool) []int64 {
	sets := make([]map[string]bool, len(ws))
	for _, e := range events {
		if e.Org != org || (keep != nil && !keep[org+"/"+e.CallKey]) {
			continue
		}
		for i, w := range ws {
			if !e.CreationTime.Before(w.Start) && e.CreationTime.Before(w.End) {
				if sets[i] == nil {
					sets[i] = map[string]bool{}
				}
				sets[i][e.CallKey] = true
			}
		}
	}
	out := make([]int64, len(ws))
	for i, s := range sets {
		out[i] = int64(len(s))
	}
	return out
}

func checkCounts(t *testing.T, root, org string, ws []audit.Window, want []int64) {
	t.Helper()
	got, err := CountCalls(context.Background(), root, org, ws)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for i := range ws {
		total += want[i]
		if got[i] != want[i] {
			t.Errorf("%s %s: counted %d calls, want %d", org, ws[i].Label(), got[i], want[i])
		}
	}
	if total == 0 {
		t.Fatalf("%s: no call in any window: the test proves nothing", org)
	}
}

func orgOfRel(t *testing.T, rel string) string {
	t.Helper()
	dir := filepath.ToSlash(rel)
	for _, org := range []string{"acme", "globex"} {
		if len(dir) > len("org="+org+"/") && dir[:len("org="+org+"/")] == "org="+org+"/" {
			return org
		}
	}
	t.Fatalf("file %s is under no known org", rel)
	return ""
}

func TestCountCallsEmptyLake(t *testing.T) {
	ws, _, _ := audit.Windows(base, base.Add(time.Hour), base.Add(time.Hour), audit.Hour)
	got, err := CountCalls(context.Background(), t.TempDir(), "acme", ws)
	if err != nil || len(got) != 1 || got[0] != 0 {
		t.Fatalf("empty lake: %v, %v", got, err)
	}
}
