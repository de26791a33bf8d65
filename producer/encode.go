package producer

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/callstream/callstream/schemas"
)

// appendEvent appends the JSON of e, in the field order of the schema. It
// is equivalent to json.Marshal(e) (a test holds it to that) at a fraction
// of the cost, which matters at 100,000 events a second: no reflection,
// and raw is copied as received instead of being re-validated (it was
// parsed already when the page was decoded).
func appendEvent(b []byte, e *schemas.CallEvent) []byte {
	b = append(b, `{"event_id":`...)
	b = appendString(b, e.EventID)
	b = append(b, `,"org":`...)
	b = appendString(b, e.Org)
	b = append(b, `,"call_key":`...)
	b = appendString(b, e.CallKey)
	b = append(b, `,"revision":`...)
	b = strconv.AppendInt(b, int64(e.Revision), 10)
	b = append(b, `,"call_id":`...)
	if e.CallID == nil {
		b = append(b, "null"...)
	} else {
		b = appendString(b, *e.CallID)
	}
	b = append(b, `,"source_number":`...)
	b = appendString(b, e.SourceNumber)
	b = append(b, `,"destination_number":`...)
	b = appendString(b, e.DestinationNumber)
	b = append(b, `,"call_type":`...)
	b = appendString(b, e.CallType)
	b = append(b, `,"call_status":`...)
	b = appendString(b, e.CallStatus)
	b = append(b, `,"creation_time":`...)
	b = appendTime(b, &e.CreationTime)
	b = append(b, `,"start_time":`...)
	b = appendTime(b, e.StartTime)
	b = append(b, `,"end_time":`...)
	b = appendTime(b, e.EndTime)
	b = append(b, `,"call_duration_seconds":`...)
	b = strconv.AppendInt(b, e.CallDurationSeconds, 10)
	b = append(b, `,"end_reason":`...)
	b = appendString(b, e.EndReason)
	b = append(b, `,"observed_at":`...)
	b = appendTime(b, &e.ObservedAt)
	b = append(b, `,"raw":`...)
	if len(e.Raw) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Raw...)
	}
	return append(b, '}')
}

func appendTime(b []byte, t *time.Time) []byte {
	if t == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString appends s as a JSON string. Plain printable ASCII, which
// is nearly every field of a call log, is copied; anything else goes
// through encoding/json so the escaping is exactly its own.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
