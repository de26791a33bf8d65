package unpodsim

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/unpod"
)

// benchSim serves one org with about 120,000 calls in the hour before t0,
// on 127.0.0.1, and warms the generation cache.
func benchSim(b *testing.B) (*Server, string) {
	cfg := testConfig(&fakeClock{now: t0})
	cfg.Orgs = []string{"acme"}
	cfg.CallsPerMinute = 2000
	cfg.DailyShape = false
	cfg.Start = t0.Add(-time.Hour)
	sim, url := newSim(b, cfg)
	n := 0
	sim.each("acme", filter{now: t0}, func(*call, *version) bool { n++; return true })
	if n < 100_000 {
		b.Fatalf("only %d calls", n)
	}
	return sim, url
}

// BenchmarkServePage1000 measures the simulator alone: raw HTTP GETs of
// 1,000-record pages over loopback, bodies read and discarded.
//
//	go test -run '^$' -bench ServePage1000 ./pkg/unpodsim
func BenchmarkServePage1000(b *testing.B) {
	_, url := benchSim(b)
	hc := &http.Client{}
	start, end := unpod.FormatTime(t0.Add(-time.Hour)), unpod.FormatTime(t0)
	b.ResetTimer()
	var bytes int64
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("GET", url+unpod.CallLogsPath+"?page_size=1000&start_date="+start+"&end_date="+end+
			"&page="+strconv.Itoa(1+i%100), nil)
		req.Header.Set("Authorization", "Token "+DefaultToken)
		req.Header.Set("Org-Handle", "acme")
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		bytes += n
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(bytes)/float64(b.N), "bytes/page")
}

// BenchmarkClientPage1000 is the same through the unpod client, decoding
// every record: what a producer sees.
func BenchmarkClientPage1000(b *testing.B) {
	_, url := benchSim(b)
	c := client(b, url, DefaultToken)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, err := c.CallLogs(context.Background(), unpod.Query{Org: "acme", PageSize: 1000, Page: 1 + i%100,
			Start: t0.Add(-time.Hour), End: t0})
		if err != nil || len(p.Records) != 1000 {
			b.Fatalf("page: %v", err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "records/s")
}
