package unpod

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecodePage checks that no body makes the decoder panic, and that a
// decoded page accounts for every element of data: each is either a record
// (with its bytes intact) or an Invalid entry. `make test` runs the seeds;
// run longer with
//
//	go test -run '^$' -fuzz FuzzDecodePage -fuzztime 60s ./pkg/unpod
func FuzzDecodePage(f *testing.F) {
	seeds := []string{
		`{"count":1,"status_code":200,"message":"ok","data":[{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":207}]}`,
		`{"count":2,"data":[{"id":"call_1","call_status":"no-answer","creation_time":"2025-11-18T10:30:00.000Z","call_duration":"0:05:25","bridge":1},{"creation_time":null}]}`,
		`{"count":1,"data":[{"call_status":"no_answer","creation_time":"2026-02-07T05:57:00","start_time":null,"end_time":"","call_duration":"1 day, 0:00:01"}]}`,
		`{"count":0,"data":[]}`,
		`{"count":3,"data":[1,"x",null,[],{}]}`,
		`{"count":120,"data":[{"source_number":"+9112`,
		`<html>502</html>`,
		`{"status_code":401,"message":"Invalid token."}`,
		`{"count":1e3,"data":[{"call_duration":-1}]}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := DecodePage(body, 1)
		if err != nil {
			var ae *APIError
			if !errors.Is(err, ErrMalformed) && (!errors.As(err, &ae) || ae.Status < 400) {
				t.Fatalf("error neither malformed nor an error envelope: %v", err)
			}
			return
		}
		var env struct{ Data []json.RawMessage }
		if json.Unmarshal(body, &env) != nil {
			t.Fatalf("decoder accepted a body encoding/json rejects")
		}
		if len(p.Records)+len(p.Invalid) != len(env.Data) {
			t.Fatalf("%d records + %d invalid != %d data elements", len(p.Records), len(p.Invalid), len(env.Data))
		}
		for _, r := range p.Records {
			if !bytes.Contains(body, r.Raw) {
				t.Fatalf("record raw %q is not a slice of the body", r.Raw)
			}
			if _, ok := NormalizeStatus(r.CallStatus); !ok || r.DurationSeconds < 0 {
				t.Fatalf("record with status %q, duration %d accepted", r.CallStatus, r.DurationSeconds)
			}
		}
	})
}
