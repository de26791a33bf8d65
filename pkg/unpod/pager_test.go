package unpod

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listServer serves total() records newest first, honouring page and
// page_size up to maxSize, the way the API pages.
func listServer(t *testing.T, maxSize int, total func(req int) int) (string, *atomic.Int64) {
	t.Helper()
	var reqs atomic.Int64
	srv, _ := script(t, func(w http.ResponseWriter, r *http.Request) {
		n := total(int(reqs.Add(1)))
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		size, _ := strconv.Atoi(r.URL.Query().Get("page_size"))
		size = min(size, maxSize)
		var recs []string
		for i := (page - 1) * size; i < min(page*size, n); i++ {
			// Record i is the i-th newest; its time counts down from n.
			ct := time.Date(2026, 2, 7, 0, 0, n-i, 0, time.UTC).Format(time.RFC3339)
			recs = append(recs, fmt.Sprintf(`{"call_status":"completed","creation_time":%q}`, ct))
		}
		fmt.Fprintf(w, `{"count":%d,"data":[%s]}`, n, strings.Join(recs, ","))
	})
	return srv.URL, &reqs
}

func TestReadWindow(t *testing.T) {
	tests := []struct {
		name        string
		maxSize     int
		total       func(int) int
		wantPages   int
		wantRecords int
		wantChanged bool
	}{
		{"exact pages", 1000, func(int) int { return 30 }, 3, 30, false},
		{"last page short", 1000, func(int) int { return 25 }, 3, 25, false},
		{"empty", 1000, func(int) int { return 0 }, 1, 0, false},
		{"server clamps page size", 4, func(int) int { return 10 }, 3, 10, false},
		// One record inserted at the top after page 1: page 2 repeats one
		// record, and the grown count asks for a fourth page.
		{"insert while paging", 1000, func(req int) int { return 30 + min(req-1, 1) }, 4, 31, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, reqs := listServer(t, tt.maxSize, tt.total)
			c, _ := New(fastConfig(url))
			w, err := c.ReadWindow(context.Background(), Query{Org: "acme", PageSize: 10})
			if err != nil {
				t.Fatal(err)
			}
			if w.Pages != tt.wantPages || len(w.Records) != tt.wantRecords || w.CountChanged != tt.wantChanged || int(reqs.Load()) != tt.wantPages {
				t.Fatalf("pages %d (requests %d), records %d, changed %v; want %d, %d, %v",
					w.Pages, reqs.Load(), len(w.Records), w.CountChanged, tt.wantPages, tt.wantRecords, tt.wantChanged)
			}
		})
	}
}
