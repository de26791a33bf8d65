package schemas

// The call event decoder as it was before the single-pass one (decode.go),
// kept verbatim (renamed) as the reference FuzzDecodeCallDifferential and
// BenchmarkDecodeCall compare it with: json.Unmarshal into a struct of
// pointers, then the schema's rules field by field.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// refWireCall mirrors CallEvent for decoding. The nullable fields stay raw so
// that a missing key (a schema violation) is told apart from null.
type refWireCall struct {
	EventID             *string         `json:"event_id"`
	Org                 *string         `json:"org"`
	CallKey             *string         `json:"call_key"`
	Revision            *int            `json:"revision"`
	CallID              json.RawMessage `json:"call_id"`
	SourceNumber        *string         `json:"source_number"`
	DestinationNumber   *string         `json:"destination_number"`
	CallType            *string         `json:"call_type"`
	CallStatus          *string         `json:"call_status"`
	CreationTime        *time.Time      `json:"creation_time"`
	StartTime           json.RawMessage `json:"start_time"`
	EndTime             json.RawMessage `json:"end_time"`
	CallDurationSeconds *int64          `json:"call_duration_seconds"`
	EndReason           *string         `json:"end_reason"`
	ObservedAt          *time.Time      `json:"observed_at"`
	Raw                 json.RawMessage `json:"raw"`
}

// refDecodeCall is DecodeCall before the single-pass decoder.
func refDecodeCall(data []byte) (CallEvent, error) {
	var e CallEvent
	var w refWireCall
	if err := json.Unmarshal(data, &w); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return e, fmt.Errorf("call event is not JSON: %w", err)
		}
		return e, fmt.Errorf("call event does not match its schema: %w", err)
	}
	var errs []string
	bad := func(field, why string) { errs = append(errs, fmt.Sprintf("%s: %s", field, why)) }
	str := func(field string, p *string, minLen int) string {
		switch {
		case p == nil:
			bad(field, "missing")
		case len(*p) < minLen:
			bad(field, "empty")
		default:
			return *p
		}
		return ""
	}
	e.EventID = str("event_id", w.EventID, 0)
	if w.EventID != nil && !refIsUUID(*w.EventID) {
		bad("event_id", "not a UUID")
	}
	e.Org = str("org", w.Org, 1)
	e.CallKey = str("call_key", w.CallKey, 1)
	switch {
	case w.Revision == nil:
		bad("revision", "missing")
	case *w.Revision < 1:
		bad("revision", "below 1")
	default:
		e.Revision = *w.Revision
	}
	e.CallID = refNullableString("call_id", w.CallID, bad)
	e.SourceNumber = str("source_number", w.SourceNumber, 0)
	e.DestinationNumber = str("destination_number", w.DestinationNumber, 0)
	e.CallType = str("call_type", w.CallType, 0)
	if w.CallType != nil && e.CallType != CallInbound && e.CallType != CallOutbound {
		bad("call_type", fmt.Sprintf("%q is not inbound or outbound", e.CallType))
	}
	e.CallStatus = str("call_status", w.CallStatus, 0)
	if w.CallStatus != nil && e.CallStatus != StatusCompleted && e.CallStatus != StatusMissed && e.CallStatus != StatusFailed {
		bad("call_status", fmt.Sprintf("%q is not completed, missed or failed", e.CallStatus))
	}
	if w.CreationTime == nil {
		bad("creation_time", "missing")
	} else {
		e.CreationTime = *w.CreationTime
	}
	e.StartTime = refNullableTime("start_time", w.StartTime, bad)
	e.EndTime = refNullableTime("end_time", w.EndTime, bad)
	switch {
	case w.CallDurationSeconds == nil:
		bad("call_duration_seconds", "missing")
	case *w.CallDurationSeconds < 0:
		bad("call_duration_seconds", "negative")
	default:
		e.CallDurationSeconds = *w.CallDurationSeconds
	}
	e.EndReason = str("end_reason", w.EndReason, 0)
	if w.ObservedAt == nil {
		bad("observed_at", "missing")
	} else {
		e.ObservedAt = *w.ObservedAt
	}
	if len(w.Raw) == 0 {
		bad("raw", "missing")
	} else if w.Raw[0] != '{' {
		bad("raw", "not an object")
	} else {
		e.Raw = w.Raw
	}
	if len(errs) > 0 {
		return CallEvent{}, fmt.Errorf("call event does not match its schema: %s", strings.Join(errs, "; "))
	}
	return e, nil
}

func refNullableString(field string, raw json.RawMessage, bad func(string, string)) *string {
	switch {
	case len(raw) == 0:
		bad(field, "missing")
	case bytes.Equal(raw, []byte("null")):
	default:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			bad(field, "not a string or null")
			return nil
		}
		return &s
	}
	return nil
}

func refNullableTime(field string, raw json.RawMessage, bad func(string, string)) *time.Time {
	switch {
	case len(raw) == 0:
		bad(field, "missing")
	case bytes.Equal(raw, []byte("null")):
	default:
		var t time.Time
		if err := json.Unmarshal(raw, &t); err != nil {
			bad(field, "not an RFC 3339 time or null")
			return nil
		}
		return &t
	}
	return nil
}

func refIsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
