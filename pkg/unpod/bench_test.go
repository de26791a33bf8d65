package unpod

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkDecodePage1000 measures decoding a 1,000-record page (the
// client's CPU cost per page):
//
//	go test -run '^$' -bench DecodePage1000 ./pkg/unpod
func BenchmarkDecodePage1000(b *testing.B) {
	var recs []string
	for i := 0; i < 1000; i++ {
		recs = append(recs, fmt.Sprintf(`{"id":"call_%d","source_number":"+914291680565","destination_number":"+14155554091","call_type":"inbound","call_status":"completed","creation_time":"2026-11-27T10:17:45.123Z","start_time":"2026-11-27T10:17:51Z","end_time":"2026-11-27T10:19:03Z","call_duration":"0:01:12","end_reason":"callee_hangup","bridge":1,"metadata":{"campaign":"sim-1","tags":["simulated"]}}`, i))
	}
	body := []byte(`{"count":1000,"status_code":200,"message":"ok","data":[` + strings.Join(recs, ",") + `]}`)
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		if _, err := DecodePage(body, 1); err != nil {
			b.Fatal(err)
		}
	}
}
