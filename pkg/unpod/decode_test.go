package unpod

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// diffSeeds are bodies where the single-pass decoder could plausibly part
// from encoding/json: name matching, duplicates, nulls, escapes, odd
// numbers, depth, trailing bytes.
var diffSeeds = []string{
	`{"count":1,"status_code":200,"message":"ok","data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":207}]}`,
	`{"count":2,"data":[{"id":"call_1","call_status":"no-answer","creation_time":"2025-11-18T10:30:00.000Z","call_duration":"0:05:25","bridge":1},{"creation_time":null}]}`,
	`{"count":1,"data":[{"call_status":"no_answer","creation_time":"2026-02-07T05:57:00","start_time":null,"end_time":"","call_duration":"1 day, 0:00:01"}]}`,
	`{"count":3,"data":[1,"x",null,[],{},true]}`,
	`{"COUNT":1,"Data":[{"Call_Status":"FAILED","CREATION_TIME":"2026-02-07T05:57:00Z","ID":7,"ſource_number":"+1","\u0063all_duration":"\u0030:01:02"}]}`,
	`{"count":1,"data":[{"call_status":"completed","call_status":null,"creation_time":"2026-02-07T05:57:00Z"}]}`,
	`{"count":1,"data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":"5","call_duration":null}]}`,
	`{"count":2,"data":[{"x":1}],"data":[{"call_status":"missed","creation_time":"2026-02-07"}],"count":null,"count":2}`,
	`{"count":1,"data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z"}],"data":null}`,
	`{"count":1,"status_code":500,"message":"m","data":null}`,
	`{"status_code":401,"status_code":null,"message":"Invalid token.","message":null}`,
	`{"count":1,"status_code":"200","data":[]}`,
	`{"count":1.0,"data":[]}`,
	`{"count":-0,"data":[]} `,
	`{"count":1,"data":[]}x`,
	`{"count":1,"data":[{"call_status":"compl\u0065ted","creation_time":"2026-02-07T05:57:00\u005a","source_number":"\ud83d\ude00\u00e9\/","end_reason":"` + "\xff\xfe" + `"}]}`,
	`{"count":1,"data":[{"call_status":{"a":[1,{"b":null}]},"creation_time":"2026-02-07T05:57:00Z","id":"x"}]}`,
	`{"count":1,"data":[{"call_status":true,"creation_time":"2026-02-07T05:57:00Z"}]}`,
	`{"count":1,"data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":"NaN"}]}`,
	`{"count":1,"data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":-0.0e+0}]}`,
	`{"count":1,"data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":[1]}]}`,
	`{"count":1,"data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","x":01}]}`,
	`{"count":1,"data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","x":"a` + "\t" + `"}]}`,
	`{"count":1,"data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","x":[1,]}]}`,
	`{"count":1,"data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","Kall":1,"` + "\u212a" + `":2}]}`,
	"\t\r\n {\"count\" : 1 , \"data\" : [ { \"call_status\" : \"completed\" , \"creation_time\" : \"2026-02-07T05:57:00Z\" } ] } \n",
	`{"count":1,"data":[` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `]}`,
	`{"count":1,"data":[` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `]}`,
	`null`, `[]`, `"x"`, ``, `{`, `{}`, `{"count":1,"data":[{"call_status":"completed"`,
	`<html>502</html>`,
}

// FuzzDecodeDifferential holds DecodePage and DecodeRecord to the
// json.Unmarshal implementation they replaced (reference_test.go): the same
// records field for field and byte for byte, the same Invalid indices, the
// same error or not, and the same APIError. It also checks that no Raw
// aliases the caller's body. Run longer with
//
//	go test -run '^$' -fuzz FuzzDecodeDifferential -fuzztime 3m ./pkg/unpod
func FuzzDecodeDifferential(f *testing.F) {
	for _, s := range diffSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in := bytes.Clone(body)
		got, gerr := DecodePage(in, 7)
		want, werr := refDecodePage(body, 7)
		// Clobbering the caller's buffer must not reach the page.
		for i := range in {
			in[i] = '#'
		}
		comparePages(t, got, gerr, want, werr)

		rec, rerr := DecodeRecord(json.RawMessage(body))
		wrec, wrerr := refDecodeRecord(json.RawMessage(body))
		if (rerr == nil) != (wrerr == nil) {
			t.Fatalf("DecodeRecord err = %v, reference err = %v", rerr, wrerr)
		}
		if !reflect.DeepEqual(rec, wrec) {
			t.Fatalf("DecodeRecord = %+v\nreference     %+v", rec, wrec)
		}
	})
}

func comparePages(t *testing.T, got *Page, gerr error, want *Page, werr error) {
	t.Helper()
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("err = %v, reference err = %v", gerr, werr)
	}
	if werr != nil {
		var gae, wae *APIError
		if errors.As(werr, &wae) {
			if !errors.As(gerr, &gae) || *gae != *wae {
				t.Fatalf("err = %#v, reference APIError %#v", gerr, wae)
			}
		} else if !errors.Is(gerr, ErrMalformed) {
			t.Fatalf("err = %v, want ErrMalformed like the reference's %v", gerr, werr)
		}
		return
	}
	if got.Count != want.Count || len(got.Records) != len(want.Records) || len(got.Invalid) != len(want.Invalid) {
		t.Fatalf("count %d, %d records, %d invalid; reference %d, %d, %d",
			got.Count, len(got.Records), len(got.Invalid), want.Count, len(want.Records), len(want.Invalid))
	}
	for i := range want.Records {
		if !reflect.DeepEqual(got.Records[i], want.Records[i]) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, got.Records[i], want.Records[i])
		}
	}
	for i, w := range want.Invalid {
		g := got.Invalid[i]
		if g.Page != w.Page || g.Index != w.Index || !bytes.Equal(g.Raw, w.Raw) || g.Err == nil {
			t.Fatalf("invalid %d: got %+v, reference %+v", i, g, w)
		}
	}
}

func TestDecodePageDifferentialSeeds(t *testing.T) {
	// The seeds run under FuzzDecodeDifferential too; this names the cases
	// that must come out as accepted, so that a decoder rejecting
	// everything cannot agree with the reference by accident.
	tests := []struct {
		name    string
		body    string
		records int
		invalid int
	}{
		{"case-folded and escaped names", diffSeeds[4], 1, 0},
		{"null resets a duplicate status", diffSeeds[5], 0, 1},
		{"last data wins", diffSeeds[7], 1, 0},
		{"escaped values", diffSeeds[15], 1, 0},
		{"wrong-typed member", diffSeeds[16], 0, 1},
		{"NaN duration", diffSeeds[18], 0, 1},
		{"whitespace everywhere", diffSeeds[25], 1, 0},
		{"nesting at the limit", diffSeeds[26], 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, gerr := DecodePage([]byte(tt.body), 1)
			want, werr := refDecodePage([]byte(tt.body), 1)
			comparePages(t, got, gerr, want, werr)
			if gerr != nil || len(got.Records) != tt.records || len(got.Invalid) != tt.invalid {
				t.Fatalf("err %v; want %d records and %d invalid", gerr, tt.records, tt.invalid)
			}
		})
	}
	for _, body := range []string{diffSeeds[27], diffSeeds[13] + "x", diffSeeds[11], diffSeeds[12]} {
		if _, err := DecodePage([]byte(body), 1); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodePage(%.40q) err = %v, want ErrMalformed", body, err)
		}
	}
}

func TestDecodePageFoldedNames(t *testing.T) {
	p, err := DecodePage([]byte(diffSeeds[4]), 1)
	if err != nil || len(p.Records) != 1 {
		t.Fatalf("page %+v, err %v", p, err)
	}
	r := p.Records[0]
	if r.CallStatus != StatusFailed || r.RawStatus != "FAILED" || r.ID != "7" || r.SourceNumber != "+1" || r.DurationSeconds != 62 {
		t.Fatalf("record %+v: names matched case-insensitively and escaped must count", r)
	}
}

func TestDecodePageRawIsolated(t *testing.T) {
	good := `{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z"}`
	body := []byte(`{"count":3,"data":[` + good + `,` + good + `,{"call_status":"ringing","creation_time":"2026-02-07T05:57:00Z"}]}`)
	p, err := DecodePage(body, 1)
	if err != nil || len(p.Records) != 2 || len(p.Invalid) != 1 {
		t.Fatalf("page %+v, err %v", p, err)
	}
	// Appending to one Raw must not write over the next record's bytes.
	_ = append(p.Records[0].Raw, "XXXXXXXX"...)
	// Reusing the body buffer must not change what was decoded.
	for i := range body {
		body[i] = 0
	}
	if string(p.Records[0].Raw) != good || string(p.Records[1].Raw) != good || p.Records[0].RawStatus != "completed" ||
		!strings.HasPrefix(string(p.Invalid[0].Raw), `{"call_status":"ringing"`) {
		t.Fatalf("raw changed: %s / %s / %s", p.Records[0].Raw, p.Records[1].Raw, p.Invalid[0].Raw)
	}
}

func TestParseDurationNaN(t *testing.T) {
	for _, raw := range []string{`"NaN"`, `"nan"`, `"+Inf"`} {
		if d, err := ParseDuration(json.RawMessage(raw)); err == nil {
			t.Errorf("ParseDuration(%s) = %d, want an error", raw, d)
		}
	}
}

// BenchmarkDecodePageReference1000 is the json.Unmarshal decoder on the
// same page, for comparison in one run.
func BenchmarkDecodePageReference1000(b *testing.B) {
	body := benchPage(1000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := refDecodePage(body, 1); err != nil {
			b.Fatal(err)
		}
	}
}
