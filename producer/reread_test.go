package producer

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// pageRead is one request of a window: its window and page.
type pageRead struct {
	from, to time.Time
	page     int
}

func (r pageRead) String() string {
	return fmt.Sprintf("[%s, %s) page %d", r.from.Format(time.TimeOnly), r.to.Format(time.TimeOnly), r.page)
}

// TestCountChangedWhilePagingRereads: a call is created in the window
// between page 1 and the pages after it, so count changes within the
// read. The window is read again, once, and that read (count stable) is
// complete: every call, the late one too, published once, from this one
// poll (no later rescan has run to catch what the first read missed).
func TestCountChangedWhilePagingRereads(t *testing.T) {
	api := newFakeAPI(t)
	var recs []fakeRecord
	for i := range 25 {
		ts := edgeT0.Add(-30*time.Minute + time.Duration(i)*time.Second)
		recs = append(recs, fakeRecord{ts, callLog(fmt.Sprint("c", i), ts, "completed", "")})
	}
	api.set(recs...)
	late := edgeT0.Add(-30*time.Minute + 30*time.Second)
	var reads []pageRead
	inserted := false
	api.onRequest = func(f *fakeAPI, from, to time.Time, page int) {
		if late.Before(from) || !late.Before(to) {
			return
		}
		reads = append(reads, pageRead{from, to, page})
		// Page 1 of the first read is answered; the call lands before page 2.
		if page > 1 && !inserted {
			inserted = true
			f.recs = append(f.recs, fakeRecord{late, callLog("late", late, "completed", "")})
		}
	}
	cfg := edgeConfig()
	cfg.PageSize = 10
	bus := &busPublisher{}
	ep := newEdgeProducer(t, newClient(t, api.srv.URL, "tok"), cfg, bus, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
	if err := ep.pollOrg(context.Background(), "acme"); err != nil {
		t.Fatalf("poll: %v", err)
	}
	if !inserted {
		t.Fatal("the window was read in one page: the case does not change count while paging")
	}
	seen := map[string]int{}
	for _, e := range bus.events(t, "calls") {
		seen[*e.CallID]++
	}
	for i := range 25 {
		if n := seen[fmt.Sprint("c", i)]; n != 1 {
			t.Errorf("call c%d published %d times, want once", i, n)
		}
	}
	if seen["late"] != 1 {
		t.Errorf("the call created while paging was published %d times, want once (by the re-read)", seen["late"])
	}
	if len(seen) != 26 {
		t.Errorf("published %d distinct calls, want 26", len(seen))
	}
	for _, tc := range []struct {
		result string
		want   float64
	}{{"reread", 1}, {"inconsistent", 0}} {
		if n := metricValue(t, ep.reg, "callstream_producer_window_reads_total", "acme", tc.result); n != tc.want {
			t.Errorf("window_reads_total{result=%q} = %v, want %v", tc.result, n, tc.want)
		}
	}
	// Two reads of the window, each its page 1 once: 25 then 26 records
	// in pages of 10 is 3 pages a read.
	pages1 := 0
	for _, r := range reads {
		if r.page == 1 {
			pages1++
		}
	}
	if pages1 != 2 || len(reads) != 6 {
		t.Errorf("the window was requested %v, want two reads of 3 pages", reads)
	}
}

// TestMaxWindowReads: a window whose count changes on every request (a
// call created before each one) is read max_window_reads times, then
// accepted as inconsistent: reported once, re-read max_window_reads-1
// times, and the calls it saw published once each.
func TestMaxWindowReads(t *testing.T) {
	for _, maxReads := range []int{1, 2, 4} {
		t.Run(fmt.Sprint("max_window_reads=", maxReads), func(t *testing.T) {
			api := newFakeAPI(t)
			var recs []fakeRecord
			for i := range 15 {
				ts := edgeT0.Add(-30*time.Minute + time.Duration(i)*time.Second)
				recs = append(recs, fakeRecord{ts, callLog(fmt.Sprint("c", i), ts, "completed", "")})
			}
			api.set(recs...)
			target := edgeT0.Add(-30 * time.Minute)
			first, added := 0, 0
			api.onRequest = func(f *fakeAPI, from, to time.Time, page int) {
				if target.Before(from) || !target.Before(to) {
					return
				}
				if page == 1 {
					first++
				}
				ts := target.Add(time.Minute + time.Duration(added)*time.Second)
				f.recs = append(f.recs, fakeRecord{ts, callLog(fmt.Sprint("n", added), ts, "completed", "")})
				added++
			}
			cfg := edgeConfig()
			cfg.PageSize, cfg.MaxWindowReads = 10, maxReads
			bus := &busPublisher{}
			ep := newEdgeProducer(t, newClient(t, api.srv.URL, "tok"), cfg, bus, &fakeClock{now: edgeT0}, filepath.Join(t.TempDir(), "s.json"))
			if err := ep.pollOrg(context.Background(), "acme"); err != nil {
				t.Fatalf("poll: %v", err)
			}
			if first != maxReads {
				t.Errorf("the window was read %d times, want max_window_reads = %d", first, maxReads)
			}
			for _, tc := range []struct {
				result string
				want   float64
			}{{"reread", float64(maxReads - 1)}, {"inconsistent", 1}} {
				if n := metricValue(t, ep.reg, "callstream_producer_window_reads_total", "acme", tc.result); n != tc.want {
					t.Errorf("window_reads_total{result=%q} = %v, want %v", tc.result, n, tc.want)
				}
			}
			seen := map[string]int{}
			for _, e := range bus.events(t, "calls") {
				seen[*e.CallID]++
			}
			for i := range 15 {
				if n := seen[fmt.Sprint("c", i)]; n != 1 {
					t.Errorf("call c%d published %d times, want once", i, n)
				}
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("call %s published %d times", id, n)
				}
			}
		})
	}
}
