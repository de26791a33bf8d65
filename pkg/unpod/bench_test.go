package unpod

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// benchPage returns a call-logs body of n records shaped like the
// simulator's: every variant field (string duration, milliseconds, unknown
// nested metadata) that makes decoding work.
func benchPage(n int) []byte {
	recs := make([]string, 0, n)
	for i := 0; i < n; i++ {
		recs = append(recs, fmt.Sprintf(`{"id":"call_%d","source_number":"+914291680565","destination_number":"+14155554091","call_type":"inbound","call_status":"completed","creation_time":"2026-11-27T10:17:45.123Z","start_time":"2026-11-27T10:17:51Z","end_time":"2026-11-27T10:19:03Z","call_duration":"0:01:12","end_reason":"callee_hangup","bridge":1,"metadata":{"campaign":"sim-1","tags":["simulated"]}}`, i))
	}
	return []byte(fmt.Sprintf(`{"count":%d,"status_code":200,"message":"ok","data":[%s]}`, n, strings.Join(recs, ",")))
}

// BenchmarkDecodePage1000 measures decoding a 1,000-record page (the
// client's CPU cost per page):
//
//	go test -run '^$' -bench 'DecodePage|ClientPage' -benchmem ./pkg/unpod
func BenchmarkDecodePage1000(b *testing.B) {
	body := benchPage(1000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodePage(body, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientPage1000 measures Client.CallLogs end to end for a
// 1,000-record page from a local server: HTTP, reading the body and
// decoding, which is what the producer pays per page.
func BenchmarkClientPage1000(b *testing.B) {
	body := benchPage(1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}))
	defer srv.Close()
	c, err := New(fastConfig(srv.URL))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		p, err := c.CallLogs(ctx, Query{Org: "acme", Page: 1, PageSize: 1000})
		if err != nil || len(p.Records) != 1000 {
			b.Fatalf("page: %v", err)
		}
	}
}
