package producer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

// TestAppendEventMatchesEncodingJSON holds the hand-written encoder to
// encoding/json's output for events with every kind of field, and to the
// schema.
func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	observed := time.Date(2026, 2, 7, 6, 0, 31, 123456789, time.UTC)
	raws := []string{
		`{"call_status":"completed","bridge":1}`,
		`{"source_number":"+91 <12> & \"quoted\"","note":"caf\u00e9 \u2028"}`,
	}
	for _, c := range identityCases() {
		for _, raw := range raws {
			r := c.rec
			r.Raw = json.RawMessage(raw)
			r.EndReason = "ended \"early\" <by> caller & café\n"
			e := NewEvent(c.org, &r, Identify(c.org, &r), 3, observed)
			got := appendEvent(nil, &e)
			want, err := json.Marshal(&e)
			if err != nil {
				t.Fatal(err)
			}
			// encoding/json re-escapes raw (<, >, &); appendEvent keeps
			// it byte for byte, so compare values, then raw's bytes.
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("%s: %v\n%s", c.name, err, got)
			}
			if err := json.Unmarshal(want, &w); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("%s:\n got %s\nwant %s", c.name, got, want)
			}
			if !bytes.Contains(got, []byte(`"raw":`+raw+`}`)) {
				t.Errorf("%s: raw not kept byte for byte:\n%s", c.name, got)
			}
			if err := v.ValidateCall(got); err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		}
	}
}

// TestEventFromDecodedPage builds events from records as the API client
// decodes them (both id variants, both duration formats, no-answer) and
// validates them against the schema file.
// TestAppendStringMatchesEncodingJSON: each character the fast path must
// leave to encoding/json, alone in a string (where no other character
// would send the string there), comes out as encoding/json writes it.
func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain +91 text ~", "\"", "\\", "<", ">", "&", "\x00", "\x1f", "\n", "\x7f", "\x80", "\xff", "é", "\u2028"} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func TestEventFromDecodedPage(t *testing.T) {
	body := []byte(`{"count":3,"status_code":200,"message":"ok","data":[
	 {"id":"call_abc123def456","source_number":"+911234567890","destination_number":"+14155551234","call_type":"outbound","call_status":"completed","creation_time":"2026-02-07T05:57:00Z","start_time":"2026-02-07T05:57:04Z","end_time":"2026-02-07T06:00:31Z","call_duration":207,"end_reason":"caller_hangup"},
	 {"source_number":"+911234567890","destination_number":"+14155551234","call_type":"inbound","call_status":"no-answer","creation_time":"2025-11-18T10:30:00.000Z","start_time":null,"end_time":null,"call_duration":"0:00:00","end_reason":"customer-did-not-answer","bridge":1},
	 {"source_number":"+911234567890","destination_number":"+14155551234","call_type":"outbound","call_status":"failed","creation_time":"2025-11-18T10:31:00.5Z","start_time":null,"end_time":"2025-11-18T10:31:03Z","call_duration":"0:05:25","end_reason":"busy"}]}`)
	page, err := unpod.DecodePage(body, 1)
	if err != nil {
		t.Fatal(err)
	}
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	for i := range page.Records {
		r := &page.Records[i]
		e := NewEvent("acme", r, Identify("acme", r), 1, time.Now())
		msg, err := NewMessage(&e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.DecodeCall(msg.Payload)
		if err != nil {
			t.Fatalf("record %d: %v\n%s", i, err, msg.Payload)
		}
		if !bytes.Equal(got.Raw, r.Raw) {
			t.Errorf("record %d: raw changed:\n got %s\nwant %s", i, got.Raw, r.Raw)
		}
		if got.CallStatus != r.CallStatus || got.CallDurationSeconds != r.DurationSeconds {
			t.Errorf("record %d: status %s duration %d, want %s %d", i, got.CallStatus, got.CallDurationSeconds, r.CallStatus, r.DurationSeconds)
		}
		if msg.Metadata[schemas.HeaderType] != schemas.TypeCallCreated || msg.UUID != e.EventID {
			t.Errorf("record %d: metadata %v", i, msg.Metadata)
		}
	}
}

// TestScanEventMatchesDecoder holds the restore's fast path to the JSON
// decoder, and both to the record: the content hash recomputed from an
// event's value is the one the event was published with. The scanner
// declines what it cannot read, and the decoder then reads it.
func TestScanEventMatchesDecoder(t *testing.T) {
	observed := time.Date(2026, 2, 7, 6, 0, 31, 123456789, time.UTC)
	cases := identityCases()
	odd := cases[1].rec
	odd.EndReason, odd.SourceNumber, odd.DestinationNumber = `a "quoted" <b> & \ reason`, "+91 é ✓", "+1\u2028"
	cases = append(cases, identityCase{"escapes and unicode", "org \"q\"", odd})
	for _, c := range cases {
		id := Identify(c.org, &c.rec)
		e := NewEvent(c.org, &c.rec, id, 7, observed)
		for name, data := range map[string][]byte{"appendEvent": appendEvent(nil, &e), "encoding/json": mustJSON(t, &e)} {
			var want, got topicEntry
			if err := decodeEntry(data, &want); err != nil {
				t.Fatal(err)
			}
			if ok := scanEvent(data, &got); ok && !sameEntry(&got, &want) {
				t.Errorf("%s %s: scan %+v, decoder %+v", c.name, name, got, want)
			} else if !ok && c.name != "escapes and unicode" {
				t.Errorf("%s %s: the scanner declined an event it writes", c.name, name)
			}
			if h := want.content.identity(); h.ContentHash != id.ContentHash || want.revision != 7 || string(want.eventID) != e.EventID {
				t.Errorf("%s %s: recomputed %s revision %d event %s; published %s revision 7 event %s",
					c.name, name, h.ContentHash, want.revision, want.eventID, id.ContentHash, e.EventID)
			}
		}
	}
	for _, bad := range []string{
		`{"org":"acme","event_id":"x","call_key":"k","revision":1}`,
		`{"event_id":"x","org":"ac\"me","call_key":"k","revision":1,"creation_time":"2026-02-07T05:57:00Z"}`,
		`{"event_id":"x","org":"acme","call_key":"k","revision":"1","creation_time":"2026-02-07T05:57:00Z"}`,
		`{"event_id":"x","org":"acme","call_key":"k","revision":1}`,
		`not json`,
	} {
		var e topicEntry
		if scanEvent([]byte(bad), &e) {
			t.Errorf("scanEvent(%s) = %+v, want a refusal", bad, e)
		}
	}
}

// sameEntry compares two entries field by field (empty and nil text are
// the same: a null call_id).
func sameEntry(a, b *topicEntry) bool {
	ca, cb := &a.content, &b.content
	sameTime := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	for _, p := range [][2][]byte{{a.eventID, b.eventID}, {ca.org, cb.org}, {ca.callKey, cb.callKey}, {ca.id, cb.id}, {ca.source, cb.source},
		{ca.dest, cb.dest}, {ca.callType, cb.callType}, {ca.status, cb.status}, {ca.endReason, cb.endReason}} {
		if !bytes.Equal(p[0], p[1]) {
			return false
		}
	}
	return a.revision == b.revision && ca.creation.Equal(cb.creation) && sameTime(ca.start, cb.start) && sameTime(ca.end, cb.end) &&
		ca.duration == cb.duration
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNewEventAndMessageEdges: an event's times are in UTC whatever zone
// the record gave them in (the JSON then always reads Z), and a message
// refuses a raw record that is not JSON but takes an event without one.
func TestNewEventAndMessageEdges(t *testing.T) {
	ist := time.FixedZone("IST", 5*3600+1800)
	start := time.Date(2026, 2, 7, 11, 30, 0, 0, ist)
	r := unpod.Record{SourceNumber: "+1", DestinationNumber: "+2", CallType: "inbound", CallStatus: "completed",
		CreationTime: start, StartTime: &start, EndTime: &start}
	e := NewEvent("acme", &r, Identify("acme", &r), 1, start)
	for name, tm := range map[string]*time.Time{"creation": &e.CreationTime, "start": e.StartTime, "end": e.EndTime, "observed": &e.ObservedAt} {
		if tm.Location() != time.UTC || !tm.Equal(start) {
			t.Errorf("%s time %s, want %s in UTC", name, tm, start.UTC())
		}
	}
	if _, err := NewMessage(&e); err != nil {
		t.Errorf("an event without a raw record: %v", err)
	}
	e.Raw = json.RawMessage(`{"call_status":`)
	if _, err := NewMessage(&e); err == nil || !strings.Contains(err.Error(), "raw record is not valid JSON") {
		t.Errorf("an event whose raw record is cut short: %v, want an error naming it", err)
	}
}

// TestTruncate: a text longer than n is cut to n and marked; one of n or
// fewer is whole.
func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{{"", 3, ""}, {"abc", 3, "abc"}, {"abcd", 3, "abc..."}, {"ab", 3, "ab"}} {
		if got := truncate(tc.s, tc.n); got != tc.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

// TestPreparedPayloadsShareNothing: the events of a batch are encoded into
// one buffer, and each payload must still be its own event, whole, and
// unreachable from its neighbour. Records whose raw JSON is larger than
// the room reserved per event make the buffer grow mid-batch.
func TestPreparedPayloadsShareNothing(t *testing.T) {
	t0 := time.Date(2026, 2, 7, 5, 57, 0, 0, time.UTC)
	var recs []*unpod.Record
	for i, raw := range []string{`{"a":1}`, `{"pad":"` + strings.Repeat("x", 3000) + `"}`, `{"b":2}`, `{}`} {
		recs = append(recs, &unpod.Record{SourceNumber: fmt.Sprintf("+1%d", i), DestinationNumber: "+2", CallType: "inbound",
			CallStatus: "completed", CreationTime: t0.Add(time.Duration(i) * time.Second), Raw: json.RawMessage(raw)})
	}
	b := &batch{window: Window{Start: t0, End: t0.Add(time.Hour)}, recs: recs, observed: t0.Add(time.Minute)}
	for _, r := range recs {
		id := Identify("acme", r)
		b.ids, b.keys, b.revisions = append(b.ids, id), append(b.keys, keyOf("acme", id.CallKey)), append(b.revisions, 1)
	}
	p := &Producer{cfg: DefaultConfig()}
	out := p.prepare("acme", b)
	if len(out) != len(recs) {
		t.Fatalf("prepared %d events of %d", len(out), len(recs))
	}
	for i, o := range out {
		want, err := json.Marshal(o.event)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(o.msg.Payload, want) {
			t.Fatalf("event %d: payload\n%s\nwant\n%s", i, o.msg.Payload, want)
		}
		if got := o.msg.Metadata.Get(schemas.HeaderTime); got != b.observed.Format(time.RFC3339Nano) {
			t.Errorf("event %d: %s = %q, want the batch's observation time", i, schemas.HeaderTime, got)
		}
		_ = append(o.msg.Payload, "XXXXXXXX"...) // must not write into the next payload
	}
	for i, o := range out {
		if !json.Valid(o.msg.Payload) {
			t.Errorf("event %d: after appending to every payload, %q is not JSON", i, o.msg.Payload)
		}
	}
}
