package unpod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestZeroPageSendsNothing: a query without page or page_size sends
// neither, leaving the API's defaults (page 1, 20 records); page=0 would be
// an invalid page.
func TestZeroPageSendsNothing(t *testing.T) {
	var got *http.Request
	srv, _ := script(t, func(w http.ResponseWriter, r *http.Request) { got = r; ok(w, r) })
	c, err := New(fastConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CallLogs(context.Background(), Query{Org: "acme"}); err != nil {
		t.Fatal(err)
	}
	if v := got.URL.Query(); v.Has("page") || v.Has("page_size") {
		t.Errorf("query %v, want no page and no page_size", v)
	}
}

// TestInvalidRecordNamesItsPage: a record that cannot be decoded is reported
// with the page it came from (the dead letter's metadata): page 1 when the
// query names none.
func TestInvalidRecordNamesItsPage(t *testing.T) {
	const body = `{"count":2,"status_code":200,"message":"ok","data":[` +
		`{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":207},{"call_status":"completed"}]}`
	srv, _ := script(t, func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(body)) })
	c, err := New(fastConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ page, want int }{{0, 1}, {1, 1}, {3, 3}} {
		p, err := c.CallLogs(context.Background(), Query{Org: "acme", Page: tc.page, PageSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Records) != 1 || len(p.Invalid) != 1 {
			t.Fatalf("page %d: %d records, %d invalid, want 1 and 1", tc.page, len(p.Records), len(p.Invalid))
		}
		if p.Invalid[0].Page != tc.want || p.Invalid[0].Index != 1 {
			t.Errorf("query page %d: invalid record on page %d index %d, want page %d index 1", tc.page, p.Invalid[0].Page, p.Invalid[0].Index, tc.want)
		}
	}
}

// TestGivingUpCountsAttempts: when the retry budget runs out the error says
// how many attempts were made, as many as the server saw.
func TestGivingUpCountsAttempts(t *testing.T) {
	srv, n := script(t, status(503, "down"))
	cfg := fastConfig(srv.URL)
	cfg.MaxRetryTime = 200 * time.Millisecond
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CallLogs(context.Background(), Query{Org: "acme"})
	if err == nil {
		t.Fatal("a server that always answers 503 did not fail the request")
	}
	m := regexp.MustCompile(`giving up after (\d+) attempts`).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("error %q does not say it gave up", err)
	}
	if got, _ := strconv.Atoi(m[1]); int64(got) != n.Load() || got < 2 {
		t.Errorf("error says %d attempts, the server saw %d requests", got, n.Load())
	}
	// A 503 without Retry-After waits the backoff, at least half the
	// initial interval (randomization 0.5), before each retry: not a
	// retry at once, which would hammer a server that is down.
	if most := int64(cfg.MaxRetryTime/(cfg.InitialBackoff/2)) + 1; n.Load() > most {
		t.Errorf("%d requests in a %s budget with a %s initial backoff: retried without waiting (at most %d)", n.Load(), cfg.MaxRetryTime, cfg.InitialBackoff, most)
	}
}

// TestEvery2xxIsAnAnswer: any 2xx status carries the page, up to 299; 300
// is refused (no redirect is followed).
func TestEvery2xxIsAnAnswer(t *testing.T) {
	for _, tc := range []struct {
		code int
		ok   bool
	}{{200, true}, {203, true}, {299, true}, {300, false}} {
		srv, _ := script(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tc.code); w.Write([]byte(okPage)) })
		c, err := New(fastConfig(srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		p, err := c.CallLogs(context.Background(), Query{Org: "acme"})
		if tc.ok && (err != nil || len(p.Records) != 1) {
			t.Errorf("status %d: %v, want the page", tc.code, err)
		}
		if !tc.ok && err == nil {
			t.Errorf("status %d accepted as an answer", tc.code)
		}
	}
}

// TestPermanentAndRetryable pins the retry classification at its edges:
// every 3xx and 4xx but 429 needs an operator, 429 and every 5xx are
// retried, a 404 past the last page is neither.
func TestPermanentAndRetryable(t *testing.T) {
	for _, tc := range []struct {
		status               int
		pastLast             bool
		permanent, retryable bool
	}{
		{300, false, true, false}, {301, false, true, false}, {399, false, true, false},
		{400, false, true, false}, {401, false, true, false}, {404, false, true, false},
		{404, true, false, false}, {428, false, true, false}, {429, false, false, true},
		{430, false, true, false}, {499, false, true, false},
		{500, false, false, true}, {503, false, false, true}, {599, false, false, true},
	} {
		err := &APIError{Status: tc.status, PastLastPage: tc.pastLast}
		if IsPermanent(err) != tc.permanent || IsRetryable(err) != tc.retryable {
			t.Errorf("status %d (past last page %v): IsPermanent %v, IsRetryable %v; want %v, %v",
				tc.status, tc.pastLast, IsPermanent(err), IsRetryable(err), tc.permanent, tc.retryable)
		}
	}
}

// TestOrganizationsListingIsBounded: a server that repeats its first page
// for every page number, with a count it never reaches, is read maxOrgPages
// times and no more.
func TestOrganizationsListingIsBounded(t *testing.T) {
	srv, n := script(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"count":100000,"data":[{"name":"A","domain_handle":"a"}]}`))
	})
	c, err := New(fastConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	orgs, err := c.Organizations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n.Load() != maxOrgPages || len(orgs) != maxOrgPages {
		t.Errorf("%d requests, %d organizations listed; want %d of each", n.Load(), len(orgs), maxOrgPages)
	}
}

// TestRetriesCountedByReason: each retry is counted under its reason, a
// 429 apart from the 5xx (rate limiting is not an outage).
func TestRetriesCountedByReason(t *testing.T) {
	truncated := func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(okPage[:40])) }
	srv, _ := script(t, status(429, "slow down", "Retry-After", "0"), status(503, "down"), status(500, "boom"), truncated, ok)
	reg := prometheus.NewRegistry()
	cfg := fastConfig(srv.URL)
	cfg.Registerer = reg
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CallLogs(context.Background(), Query{Org: "acme"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "callstream_unpod_retries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					got[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	want := map[string]float64{"429": 1, "5xx": 2, "malformed": 1}
	if !maps.Equal(got, want) {
		t.Errorf("retries by reason %v, want %v", got, want)
	}
}

// TestAPIErrorNamesTheRequest: an API error names the request, the
// organization when there is one, the status and the message (the
// status's text when the body had none).
func TestAPIErrorNamesTheRequest(t *testing.T) {
	for _, tc := range []struct {
		err  APIError
		want string
	}{
		{APIError{Method: "GET", URL: "http://x/api", Org: "acme", Status: 403, Message: "Forbidden org"}, "unpod: GET http://x/api (org acme): 403: Forbidden org"},
		{APIError{Method: "GET", URL: "http://x/orgs", Status: 500}, "unpod: GET http://x/orgs: 500: Internal Server Error"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

// TestOrganizationsErrorEnvelope: a 200 whose body is an error envelope with
// status_code 400 is that 400 (permanent, not retried), not a malformed
// body to retry.
func TestOrganizationsErrorEnvelope(t *testing.T) {
	srv, n := script(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"status_code":400,"message":"Bad request"}`))
	})
	c, err := New(fastConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Organizations(context.Background())
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 400 || !IsPermanent(err) || n.Load() != 1 {
		t.Errorf("err = %v after %d requests, want the 400 at once", err, n.Load())
	}
}

// pagedServer serves count records (created a second apart) in pages of the
// requested size, the record at each index in bad served without
// creation_time (undecodable).
func pagedServer(t *testing.T, count int, bad map[int]bool) (*Client, *atomic.Int64) {
	t.Helper()
	srv, n := script(t, func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		size, _ := strconv.Atoi(r.URL.Query().Get("page_size"))
		page = max(page, 1)
		var b strings.Builder
		fmt.Fprintf(&b, `{"count":%d,"data":[`, count)
		for i := (page - 1) * size; i < min(page*size, count); i++ {
			if i > (page-1)*size {
				b.WriteByte(',')
			}
			if bad[i] {
				fmt.Fprintf(&b, `{"id":"r%d","call_status":"completed"}`, i)
				continue
			}
			fmt.Fprintf(&b, `{"id":"r%d","call_status":"completed","creation_time":"2026-02-07T05:%02d:%02dZ","call_duration":1}`, i, i/60, i%60)
		}
		b.WriteString("]}")
		w.Write([]byte(b.String()))
	})
	c, err := New(fastConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return c, n
}

// TestPagerReadsEveryPage: a window of 5 records in pages of 2 is three
// pages, every record read once, an undecodable one counting as read (not
// as a short page that ends the window); page_size 0 pages by the API's
// default of 20.
func TestPagerReadsEveryPage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		count     int
		size      int
		bad       map[int]bool
		pages     int
		sentSize  string
		records   int
		undecoded int
	}{
		{"pages of 2", 5, 2, nil, 3, "2", 5, 0},
		{"an undecodable record on page 1", 5, 2, map[int]bool{0: true}, 3, "2", 4, 1},
		{"the default page size", 45, 0, nil, 3, "20", 45, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, n := pagedServer(t, tc.count, tc.bad)
			w, err := c.ReadWindow(context.Background(), Query{Org: "acme", PageSize: tc.size})
			if err != nil {
				t.Fatal(err)
			}
			if w.Pages != tc.pages || int(n.Load()) != tc.pages || len(w.Records) != tc.records || len(w.Invalid) != tc.undecoded || w.CountChanged {
				t.Errorf("%d pages in %d requests, %d records, %d undecodable, count changed %v; want %d pages, %d records, %d undecodable",
					w.Pages, n.Load(), len(w.Records), len(w.Invalid), w.CountChanged, tc.pages, tc.records, tc.undecoded)
			}
			p := c.NewPager(Query{Org: "acme", PageSize: tc.size})
			if _, err := p.Next(context.Background()); err != nil {
				t.Fatal(err)
			}
			if p.Pages() != tc.pages {
				t.Errorf("Pages() = %d after page 1, want %d", p.Pages(), tc.pages)
			}
		})
	}
}

// TestPagerEmptyFirstPage: page 1 empty although count says 5 (the data
// changed): the read ends there, and the page count stays defined.
func TestPagerEmptyFirstPage(t *testing.T) {
	srv, _ := script(t, func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"count":5,"data":[]}`)) })
	c, err := New(fastConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	p := c.NewPager(Query{Org: "acme", PageSize: 10})
	if _, err := p.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Next(context.Background()); err != io.EOF {
		t.Errorf("after an empty page 1: %v, want io.EOF", err)
	}
	if got := p.Pages(); got != 1 {
		t.Errorf("Pages() = %d, want 1 (count 5 in pages of 10)", got)
	}
}

// TestParseDurationBounds: zero and the largest duration accepted (a
// century) are durations, in every spelling; one past is not.
func TestParseDurationBounds(t *testing.T) {
	century := strconv.Itoa(maxDurationSeconds)
	for _, tc := range []struct {
		raw  string
		want int64
		ok   bool
	}{
		{`0`, 0, true}, {`"0"`, 0, true}, {`"0 days, 0:05:25"`, 325, true}, {`"0:00"`, 0, true},
		{century, maxDurationSeconds, true}, {`"` + century + `"`, maxDurationSeconds, true},
		{strconv.Itoa(maxDurationSeconds + 1), 0, false}, {`"` + strconv.Itoa(maxDurationSeconds+1) + `"`, 0, false},
		{`"36500 days, 0:00:00"`, 36500 * 86400, true}, {`"36501 days, 0:00:00"`, 0, false},
		{`-1`, 0, false}, {`"-1"`, 0, false}, {`"-1 days, 0:00:01"`, 0, false},
		{`"0:59:59"`, 3599, true}, {`"0:60:00"`, 0, false}, {`"0:00:60"`, 0, false},
		{`"100000:00:00"`, 100000 * 3600, true}, {`"1000000:00:00"`, 0, false}, // fields of up to 6 digits
	} {
		got, err := ParseDuration(json.RawMessage(tc.raw))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDuration(%s) = %d, %v; want %d, ok %v", tc.raw, got, err, tc.want, tc.ok)
		}
	}
}

// TestErrorMessage: the human message of an error body, from the API's
// message, Django REST's detail, or the text itself cut at 200 bytes.
func TestErrorMessage(t *testing.T) {
	long := strings.Repeat("x", 200)
	for _, tc := range []struct{ body, want string }{
		{`{"message":"Invalid token.","detail":"other"}`, "Invalid token."},
		{`{"detail":"Invalid page."}`, "Invalid page."},
		{`{}`, "{}"},
		{" bad gateway \n", "bad gateway"},
		{long, long},
		{long + "y", long + "..."},
	} {
		if got := errorMessage([]byte(tc.body)); got != tc.want {
			t.Errorf("errorMessage(%q) = %q, want %q", tc.body, got, tc.want)
		}
	}
}

// TestStatusMapChangesACanonicalSpelling: status_map may change the
// mapping of a canonical spelling too (an API whose "failed" means a
// missed call), and an empty map leaves the defaults.
func TestStatusMapChangesACanonicalSpelling(t *testing.T) {
	remap, err := StatusMap{"failed=missed", "busy=failed"}.compile()
	if err != nil {
		t.Fatal(err)
	}
	empty, err := StatusMap{}.compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		table    *statusTable
		in, want string
	}{
		{remap, "failed", StatusMissed}, {remap, "busy", StatusFailed}, {remap, "completed", StatusCompleted},
		{empty, "failed", StatusFailed}, {empty, "completed", StatusCompleted}, {nil, "missed", StatusMissed},
	} {
		if got, ok := tc.table.normalize(tc.in); !ok || got != tc.want {
			t.Errorf("normalize(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}
