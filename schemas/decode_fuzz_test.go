package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// decodeSeeds are real events (encoded by encoding/json as the producer
// encodes them, see producer/encode.go) and edits of them where the single-
// pass decoder could plausibly part from the reference or the schema.
func decodeSeeds() []string {
	enc := func(e CallEvent) string {
		b, err := json.Marshal(&e)
		if err != nil {
			panic(err)
		}
		return string(b)
	}
	small, sim := validCall(), realisticCall()
	bare := validCall()
	bare.CallID, bare.StartTime, bare.EndTime, bare.Revision = nil, nil, nil, 3
	odd := realisticCall()
	ist := time.FixedZone("IST", 5*3600+1800)
	st := odd.StartTime.In(ist)
	odd.StartTime = &st
	odd.SourceNumber, odd.EndReason, odd.CallStatus = "+91 <98>&\u00e9\U0001F600", "line\n\"quoted\"\\", StatusFailed
	base := enc(small)
	edit := func(old, new string) string { return strings.Replace(base, old, new, 1) }
	seeds := []string{
		base, enc(sim), enc(bare), enc(odd),
		// Names: folded spellings, escapes, duplicates (last wins), unknown members.
		edit(`"org":`, `"ORG":`), edit(`"org":"unpod"`, `"org":"unpod","Org":"other"`),
		edit(`"org":`, `"\u006frg":`), edit(`"org":"unpod"`, `"org":5,"org":"unpod"`),
		edit(`"org":"unpod"`, `"org":"unpod","org":null`), edit(`"revision":1`, `"revision":"x","revision":2`),
		edit(`"creation_time":"2026-02-07T05:57:00Z"`, `"creation_time":"yesterday","creation_time":"2026-02-07T05:57:00Z"`),
		edit(`"raw":{`, `"raw":null,"raw":{`), edit(`"event_id"`, `"future":{"a":[1,2,{"b":null}]},"event_id"`),
		// Values: escapes, invalid UTF-8, numbers, times.
		edit(`"org":"unpod"`, `"org":"\u0075npod\ud800"`), edit(`"org":"unpod"`, "\"org\":\"un\xffpod\""),
		edit(`"revision":1`, `"revision":1.0`), edit(`"revision":1`, `"revision":1e0`), edit(`"revision":1`, `"revision":-0`),
		edit(`"revision":1`, `"revision":9223372036854775808`), edit(`"call_duration_seconds":207`, `"call_duration_seconds":-1`),
		edit(`"2026-02-07T05:57:00Z"`, `"2026-02-07T05:57:00,5Z"`), edit(`"2026-02-07T05:57:00Z"`, `"2026-02-07T5:57:00Z"`),
		edit(`"2026-02-07T05:57:00Z"`, `"2026-02-07T05:57:00+24:00"`), edit(`"2026-02-07T05:57:00Z"`, `"2026-02-07t05:57:00z"`),
		edit(`"2026-02-07T05:57:00Z"`, `"2026-02-07T23:59:60Z"`), edit(`"2026-02-07T05:57:00Z"`, `"2026-02-07T05:57:00.1234567891Z"`),
		edit(`"2026-02-07T05:57:00Z"`, `"2024-02-29T05:57:00-07:30"`), edit(`"2026-02-07T05:57:00Z"`, `"2026-02-29T05:57:00Z"`),
		edit(`"2026-02-07T05:57:00Z"`, `"2026-02-07T05:57:00\u005a"`), edit(`"2026-02-07T05:57:00Z"`, `"0000-01-01T00:00:00Z"`),
		edit(`"call_id":"call_abc"`, `"call_id":7`), edit(`"start_time":"2026-02-07T05:57:10Z"`, `"start_time":""`),
		edit(`"event_id":"6ba7b810`, `"event_id":"6BA7B810`), edit(`"call_type":"inbound"`, `"call_type":"Inbound"`),
		// JSON: whitespace, trailing bytes, truncation, other top-level values.
		" \n" + strings.ReplaceAll(base, ",", " ,\t") + "\r\n", base + "x", base[:len(base)-1], base + "{}",
		`null`, `[]`, `"x"`, `1`, `{}`, ``, `{`, `{"raw":{}}`,
	}
	return seeds
}

// FuzzDecodeCallDifferential holds DecodeCall to encoding/json, to the
// json.Unmarshal decoder it replaced (refDecodeCall) and to the JSON Schema:
//
//   - it says ErrNotJSON exactly when json.Valid refuses the payload, and
//     ErrSchema for every other refusal;
//   - it never accepts what ValidateCall refuses;
//   - it decodes field for field what the reference decodes from the same
//     members as encoding/json reads them into a map (exact names, the last
//     of duplicates), which is how the schema reads them too, and refuses
//     what the reference refuses there. Where the reference accepts and
//     DecodeCall refuses (the looser time forms), the schema must refuse;
//   - the event does not alias the payload, and writing to or appending to
//     Raw changes no string of the event;
//   - DecodeCallInPlace gives the same event and the same error.
//
// Run longer with
//
//	go test -run '^$' -fuzz FuzzDecodeCallDifferential -fuzztime 60s ./schemas
func FuzzDecodeCallDifferential(f *testing.F) {
	v, err := NewValidator()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range decodeSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in := bytes.Clone(body)
		got, gerr := v.DecodeCall(in)
		for i := range in {
			in[i] = '#' // reusing the payload's buffer must not reach the event
		}
		// Without the copy, the same event and the same error.
		inPlace, ierr := v.DecodeCallInPlace(bytes.Clone(body))
		if fmt.Sprint(ierr) != fmt.Sprint(gerr) || !reflect.DeepEqual(inPlace, got) {
			t.Fatalf("DecodeCallInPlace = %+v, %v\nDecodeCall        %+v, %v", inPlace, ierr, got, gerr)
		}
		valid := json.Valid(body)
		if errors.Is(gerr, ErrNotJSON) != !valid || errors.Is(gerr, ErrSchema) != (gerr != nil && valid) {
			t.Fatalf("json.Valid = %v, err = %v", valid, gerr)
		}
		if !valid {
			return
		}
		schemaErr := v.ValidateCall(body)
		if gerr == nil && schemaErr != nil {
			t.Fatalf("DecodeCall accepted what the schema refuses: %v", schemaErr)
		}
		want, werr := refDecodeCall(canonical(t, body))
		switch {
		case werr != nil && gerr == nil:
			t.Fatalf("DecodeCall accepted what the reference refuses: %v", werr)
		case werr == nil && gerr != nil && schemaErr == nil:
			t.Fatalf("DecodeCall refused what the reference and the schema accept: %v", gerr)
		case werr == nil && gerr == nil:
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("DecodeCall = %+v\nreference  %+v", got, want)
			}
			_ = append(got.Raw, `,"x":1}`...)
			for i := range got.Raw {
				got.Raw[i] = '#'
			}
			got.Raw = want.Raw
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("writing to Raw changed the event: %+v", got)
			}
		}
	})
}

// canonical rewrites a valid JSON document as encoding/json reads it into a
// map: the known members only, exactly named, the last value of each, byte
// for byte. A document whose top level is not an object comes back as is.
func canonical(t *testing.T, body []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || m == nil {
		return body
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for _, name := range callFieldNames {
		raw, ok := m[name]
		if !ok {
			continue
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + name + `":`)
		b.Write(raw)
	}
	b.WriteByte('}')
	if !json.Valid(b.Bytes()) {
		t.Fatalf("canonical form %q is not JSON", b.Bytes())
	}
	return b.Bytes()
}
