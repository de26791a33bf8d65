package unpod

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecodeRecord(t *testing.T) {
	ts := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		v = v.UTC()
		return &v
	}
	base := `"source_number":"+911234567890","destination_number":"+14155550000","call_type":"Outbound"`
	tests := []struct {
		name string
		raw  string
		want Record
	}{
		{
			name: "current docs, integer duration",
			raw:  `{` + base + `,"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","start_time":"2026-02-07T05:57:10Z","end_time":"2026-02-07T06:00:37Z","call_duration":207,"end_reason":"caller_hangup"}`,
			want: Record{SourceNumber: "+911234567890", DestinationNumber: "+14155550000", CallType: "outbound",
				CallStatus: "completed", RawStatus: "completed", CreationTime: *ts("2026-02-07T05:57:00Z"),
				StartTime: ts("2026-02-07T05:57:10Z"), EndTime: ts("2026-02-07T06:00:37Z"), DurationSeconds: 207, EndReason: "caller_hangup"},
		},
		{
			name: "older docs: id, milliseconds, H:MM:SS duration, bridge",
			raw:  `{"id":"call_abc123def456",` + base + `,"call_status":"completed","creation_time":"2025-11-18T10:30:00.123Z","start_time":"2025-11-18T10:30:05.000Z","end_time":"2025-11-18T10:35:30.000Z","call_duration":"0:05:25","end_reason":"customer-ended-call","bridge":1}`,
			want: Record{ID: "call_abc123def456", SourceNumber: "+911234567890", DestinationNumber: "+14155550000", CallType: "outbound",
				CallStatus: "completed", RawStatus: "completed", CreationTime: *ts("2025-11-18T10:30:00.123Z"),
				StartTime: ts("2025-11-18T10:30:05Z"), EndTime: ts("2025-11-18T10:35:30Z"), DurationSeconds: 325, EndReason: "customer-ended-call"},
		},
		{
			name: "missed with nulls",
			raw:  `{` + base + `,"call_status":"missed","creation_time":"2026-02-07T05:57:00Z","start_time":null,"end_time":null,"call_duration":0,"end_reason":"no_answer"}`,
			want: Record{SourceNumber: "+911234567890", DestinationNumber: "+14155550000", CallType: "outbound",
				CallStatus: "missed", RawStatus: "missed", CreationTime: *ts("2026-02-07T05:57:00Z"), EndReason: "no_answer"},
		},
		{
			name: "no-answer, offset time, unknown nested fields",
			raw:  `{` + base + `,"call_status":"no-answer","creation_time":"2026-02-07T11:27:00+05:30","call_duration":null,"x":{"y":[1,2,{"z":null}]},"end_reason":"no-answer"}`,
			want: Record{SourceNumber: "+911234567890", DestinationNumber: "+14155550000", CallType: "outbound",
				CallStatus: "missed", RawStatus: "no-answer", CreationTime: *ts("2026-02-07T05:57:00Z"), EndReason: "no-answer"},
		},
		{
			name: "no_answer, numeric id and number, duration as numeric string",
			raw:  `{"id":42,"source_number":911234567890,"call_type":"inbound","call_status":"NO_ANSWER","creation_time":"2026-02-07T05:57:00","call_duration":"15"}`,
			want: Record{ID: "42", SourceNumber: "911234567890", CallType: "inbound",
				CallStatus: "missed", RawStatus: "NO_ANSWER", CreationTime: *ts("2026-02-07T05:57:00Z"), DurationSeconds: 15},
		},
		{
			name: "failed, timedelta with days",
			raw:  `{"call_status":"failed","creation_time":"2026-02-07T05:57:00Z","call_duration":"1 day, 0:00:05"}`,
			want: Record{CallStatus: "failed", RawStatus: "failed", CreationTime: *ts("2026-02-07T05:57:00Z"), DurationSeconds: 86405},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeRecord(json.RawMessage(tt.raw))
			if err != nil {
				t.Fatalf("DecodeRecord: %v", err)
			}
			if string(got.Raw) != tt.raw {
				t.Errorf("Raw = %s, want the input byte for byte", got.Raw)
			}
			got.Raw = nil
			if !equalRecord(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func equalRecord(a, b Record) bool {
	eqt := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	return a.ID == b.ID && a.SourceNumber == b.SourceNumber && a.DestinationNumber == b.DestinationNumber &&
		a.CallType == b.CallType && a.CallStatus == b.CallStatus && a.RawStatus == b.RawStatus &&
		a.CreationTime.Equal(b.CreationTime) && a.CreationTime.Location() == time.UTC &&
		eqt(a.StartTime, b.StartTime) && eqt(a.EndTime, b.EndTime) &&
		a.DurationSeconds == b.DurationSeconds && a.EndReason == b.EndReason
}

func TestDecodeRecordInvalid(t *testing.T) {
	tests := []struct{ name, raw, want string }{
		{"no creation_time", `{"call_status":"completed"}`, "no creation_time"},
		{"null creation_time", `{"call_status":"completed","creation_time":null}`, "no creation_time"},
		{"bad creation_time", `{"call_status":"completed","creation_time":"yesterday"}`, "creation_time"},
		{"bad end_time", `{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","end_time":"soon"}`, "end_time"},
		{"unknown status", `{"call_status":"ringing","creation_time":"2026-02-07T05:57:00Z"}`, "unknown call_status"},
		{"missing status", `{"creation_time":"2026-02-07T05:57:00Z"}`, "unknown call_status"},
		{"bad duration", `{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":"five"}`, "call_duration"},
		{"negative duration", `{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":-3}`, "call_duration"},
		{"not an object", `[1,2]`, "decode call log"},
		{"object where string expected", `{"call_status":{"a":1},"creation_time":"2026-02-07T05:57:00Z"}`, "decode call log"},
		{"bool where string expected", `{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","id":true}`, "decode call log"},
		{"truncated", `{"call_status":"completed","creation_time":"2026-02-07T05`, "decode call log"},
		{"trailing bytes", `{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z"} {}`, "decode call log"},
		{"bad JSON in an unknown field", `{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","x":[1,]}`, "decode call log"},
		{"NaN duration", `{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":"NaN"}`, "call_duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRecord(json.RawMessage(tt.raw))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestNormalizeStatus(t *testing.T) {
	tests := map[string]string{
		"completed": StatusCompleted, "COMPLETED": StatusCompleted, " completed ": StatusCompleted,
		"missed": StatusMissed, "no-answer": StatusMissed, "no_answer": StatusMissed, "No Answer": StatusMissed, "noanswer": StatusMissed,
		"failed": StatusFailed, "Failed": StatusFailed,
		"ringing": "", "": "", "in-progress": "",
	}
	for in, want := range tests {
		got, ok := NormalizeStatus(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeStatus(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		raw     string
		want    int64
		wantErr bool
	}{
		{`207`, 207, false}, {`0`, 0, false}, {`207.9`, 207, false}, {`null`, 0, false}, {``, 0, false},
		{`"207"`, 207, false}, {`""`, 0, false}, {`"0:05:25"`, 325, false}, {`"1:00:00"`, 3600, false},
		{`"05:25"`, 325, false}, {`"0:05:25.120000"`, 325, false}, {`"2 days, 1:00:01"`, 2*86400 + 3601, false},
		{`"0:61:00"`, 0, true}, {`"a:b:c"`, 0, true}, {`"1:2:3:4"`, 0, true}, {`-1`, 0, true}, {`true`, 0, true},
		{`"x days, 0:00:01"`, 0, true}, {`1e300`, 0, true}, {`"-0:05:25"`, 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(json.RawMessage(tt.raw))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseDuration(%s) = %d, %v; want %d, err %v", tt.raw, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestDecodePage(t *testing.T) {
	good1 := `{"call_status":"completed","creation_time":"2026-02-07T05:57:00Z","call_duration":207}`
	bad := `{"call_status":"completed","end_time":"2026-02-07T05:57:00Z"}`
	good2 := "{ \"call_status\" : \"no-answer\",\n \"creation_time\":\"2026-02-07T05:56:00.000Z\", \"new_field\": true }"
	body := `{"count": 150, "status_code": 200, "message": "ok", "data": [` + good1 + `, ` + bad + `,` + good2 + `]}`
	p, err := DecodePage([]byte(body), 3)
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 150 || len(p.Records) != 2 || len(p.Invalid) != 1 {
		t.Fatalf("page = count %d, %d records, %d invalid; want 150, 2, 1", p.Count, len(p.Records), len(p.Invalid))
	}
	if string(p.Records[0].Raw) != good1 || string(p.Records[1].Raw) != good2 {
		t.Errorf("raw records changed:\n%s\n%s", p.Records[0].Raw, p.Records[1].Raw)
	}
	inv := p.Invalid[0]
	if inv.Page != 3 || inv.Index != 1 || string(inv.Raw) != bad || !strings.Contains(inv.Error(), "page 3 record 1") {
		t.Errorf("invalid = %+v (%v)", inv, inv)
	}
}

func TestDecodePageMalformed(t *testing.T) {
	tests := map[string]string{
		"truncated":      `{"count":120,"status_code":200,"data":[{"source_number":"+9112`,
		"html":           `<html><body>502 Bad Gateway</body></html>`,
		"empty":          ``,
		"no count":       `{"data":[]}`,
		"no data":        `{"count":3}`,
		"null data":      `{"count":3,"data":null}`,
		"data not array": `{"count":3,"data":"oops"}`,
		"count a string": `{"count":"3","data":[]}`,
		"array":          `[]`,
	}
	for name, body := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := DecodePage([]byte(body), 1)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
	p, err := DecodePage([]byte(`{"count":0,"data":[]}`), 1)
	if err != nil || p.Count != 0 || len(p.Records) != 0 {
		t.Fatalf("empty page: %+v, %v", p, err)
	}
}

func TestDecodeOrganizations(t *testing.T) {
	for _, body := range []string{
		`{"count":2,"status_code":200,"data":[{"name":"Unpod","domain_handle":"unpod","x":1},{"name":"Acme","domain_handle":"acme"}]}`,
		`[{"name":"Unpod","domain_handle":"unpod","x":1},{"name":"Acme","domain_handle":"acme"}]`,
	} {
		orgs, err := DecodeOrganizations([]byte(body))
		if err != nil || len(orgs) != 2 || orgs[0].Handle != "unpod" || orgs[1].Name != "Acme" || string(orgs[0].Raw) != `{"name":"Unpod","domain_handle":"unpod","x":1}` {
			t.Errorf("DecodeOrganizations(%s) = %+v, %v", body, orgs, err)
		}
	}
	if _, err := DecodeOrganizations([]byte(`<html>`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("html: err = %v, want ErrMalformed", err)
	}
}
