package unpod

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// TestSanitize checks the edge's sanitising rule on fixed inputs with
// expected outputs written out by hand: what PostgreSQL refuses becomes
// U+FFFD, raw stays an object with every field, and the original bytes
// come back from RawBase64Member.
func TestSanitize(t *testing.T) {
	const ct = `"creation_time":"2026-02-07T05:57:00Z"`
	tests := []struct {
		name, raw string
		wantRaw   string // "" means unchanged
		field     func(Record) string
		wantField string
	}{
		{"invalid byte in a value", `{"call_status":"missed",` + ct + `,"end_reason":"no` + "\xff" + `answer"}`,
			`{"call_status":"missed",` + ct + `,"end_reason":"no` + "\uFFFD" + `answer"`,
			func(r Record) string { return r.EndReason }, "no\uFFFDanswer"},
		{"two invalid bytes, one replacement each, as encoding/json", `{"call_status":"missed",` + ct + `,"source_number":"+91` + "\xc3\x28" + `"}`,
			`{"call_status":"missed",` + ct + `,"source_number":"+91` + "\uFFFD(" + `"`,
			func(r Record) string { return r.SourceNumber }, "+91\uFFFD("},
		{"invalid byte in an unknown member", `{"call_status":"missed",` + ct + `,"x` + "\xfe" + `":1}`,
			`{"call_status":"missed",` + ct + `,"x` + "\uFFFD" + `":1`,
			func(r Record) string { return r.CallStatus }, "missed"},
		{"NUL escape", `{"call_status":"missed",` + ct + `,"destination_number":"+1\u0000"}`,
			`{"call_status":"missed",` + ct + `,"destination_number":"+1\ufffd"`,
			func(r Record) string { return r.DestinationNumber }, "+1\uFFFD"},
		{"unpaired surrogates", `{"call_status":"missed",` + ct + `,"end_reason":"\ud800x\udc00"}`,
			`{"call_status":"missed",` + ct + `,"end_reason":"\ufffdx\ufffd"`,
			func(r Record) string { return r.EndReason }, "\uFFFDx\uFFFD"},
		{"surrogate pair kept", `{"call_status":"missed",` + ct + `,"end_reason":"\ud83d\ude00"}`, "",
			func(r Record) string { return r.EndReason }, "\U0001F600"},
		{"escaped backslash before u0000 is text", `{"call_status":"missed",` + ct + `,"end_reason":"\\u0000"}`, "",
			func(r Record) string { return r.EndReason }, `\u0000`},
		{"clean", `{"call_status":"missed",` + ct + `,"end_reason":"é"}`, "",
			func(r Record) string { return r.EndReason }, "é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := DecodeRecord(json.RawMessage(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.field(rec); got != tt.wantField {
				t.Errorf("field = %q, want %q", got, tt.wantField)
			}
			if tt.wantRaw == "" {
				if string(rec.Raw) != tt.raw {
					t.Fatalf("clean record changed: %q", rec.Raw)
				}
				return
			}
			want := tt.wantRaw + `,"` + RawBase64Member + `":"` + base64.StdEncoding.EncodeToString([]byte(tt.raw)) + `"}`
			if string(rec.Raw) != want {
				t.Fatalf("raw = %q\nwant  %q", rec.Raw, want)
			}
			var obj map[string]any
			if !utf8.Valid(rec.Raw) || json.Unmarshal(rec.Raw, &obj) != nil {
				t.Fatalf("raw %q is not a valid UTF-8 JSON object", rec.Raw)
			}
			orig, err := base64.StdEncoding.DecodeString(obj[RawBase64Member].(string))
			if err != nil || string(orig) != tt.raw {
				t.Fatalf("original from %s = %q, %v; want %q", RawBase64Member, orig, err, tt.raw)
			}
			// A page sanitises the same way.
			p, err := DecodePage([]byte(`{"count":1,"data":[`+tt.raw+`]}`), 1)
			if err != nil || len(p.Records) != 1 || string(p.Records[0].Raw) != want {
				t.Fatalf("page: %+v, %v", p, err)
			}
		})
	}
}
