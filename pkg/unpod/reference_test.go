package unpod

// The decoder as it was before the single-pass scanner (decode.go), kept
// as the reference that FuzzDecodeDifferential compares against: envelope
// -> []json.RawMessage -> json.Unmarshal per record. Two steps that are not
// about JSON are shared with the decoder instead of copied: the status
// mapping (NormalizeStatus, whose table status_test.go checks) and the
// sanitising of a decoded record (sanitize, checked by sanitize_test.go).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

type refEnvelope struct {
	Count      *int              `json:"count"`
	StatusCode int               `json:"status_code"`
	Message    string            `json:"message"`
	Data       []json.RawMessage `json:"data"`
}

func refDecodePage(body []byte, page int) (*Page, error) {
	var env refEnvelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: page %d: %v", ErrMalformed, page, err)
	}
	if env.Data == nil && env.StatusCode >= 400 {
		// Some gateways answer 200 with the error in the body.
		return nil, &APIError{Status: env.StatusCode, Message: env.Message}
	}
	if env.Count == nil {
		return nil, fmt.Errorf("%w: page %d: no \"count\" field", ErrMalformed, page)
	}
	// encoding/json leaves Data nil only for a null or missing field; an
	// empty array decodes to an empty slice.
	if env.Data == nil {
		return nil, fmt.Errorf("%w: page %d: no \"data\" array", ErrMalformed, page)
	}
	p := &Page{Count: *env.Count, Records: make([]Record, 0, len(env.Data))}
	for i, raw := range env.Data {
		rec, err := refDecodeRecord(raw)
		if err != nil {
			p.Invalid = append(p.Invalid, RecordError{Page: page, Index: i, Raw: raw, Err: err})
			continue
		}
		p.Records = append(p.Records, rec)
	}
	return p, nil
}

type refWireRecord struct {
	ID                flexString      `json:"id"`
	SourceNumber      flexString      `json:"source_number"`
	DestinationNumber flexString      `json:"destination_number"`
	CallType          flexString      `json:"call_type"`
	CallStatus        flexString      `json:"call_status"`
	CreationTime      flexString      `json:"creation_time"`
	StartTime         flexString      `json:"start_time"`
	EndTime           flexString      `json:"end_time"`
	CallDuration      json.RawMessage `json:"call_duration"`
	EndReason         flexString      `json:"end_reason"`
}

func refDecodeRecord(raw json.RawMessage) (Record, error) {
	var w refWireRecord
	if err := json.Unmarshal(raw, &w); err != nil {
		return Record{}, fmt.Errorf("decode call log: %w", err)
	}
	rec := Record{
		ID:                w.ID.S,
		SourceNumber:      w.SourceNumber.S,
		DestinationNumber: w.DestinationNumber.S,
		CallType:          strings.ToLower(strings.TrimSpace(w.CallType.S)),
		RawStatus:         w.CallStatus.S,
		EndReason:         w.EndReason.S,
		Raw:               raw,
	}
	if !w.CreationTime.Set || strings.TrimSpace(w.CreationTime.S) == "" {
		return Record{}, errors.New("call log has no creation_time")
	}
	var err error
	if rec.CreationTime, err = ParseTime(w.CreationTime.S); err != nil {
		return Record{}, fmt.Errorf("creation_time: %w", err)
	}
	if rec.StartTime, err = refParseOptionalTime(w.StartTime); err != nil {
		return Record{}, fmt.Errorf("start_time: %w", err)
	}
	if rec.EndTime, err = refParseOptionalTime(w.EndTime); err != nil {
		return Record{}, fmt.Errorf("end_time: %w", err)
	}
	status, ok := NormalizeStatus(w.CallStatus.S)
	if !ok {
		return Record{}, fmt.Errorf("unknown call_status %q", w.CallStatus.S)
	}
	rec.CallStatus = status
	if rec.DurationSeconds, err = refParseDuration(w.CallDuration); err != nil {
		return Record{}, fmt.Errorf("call_duration: %w", err)
	}
	sanitize(&rec)
	return rec, nil
}

func refParseOptionalTime(f flexString) (*time.Time, error) {
	if !f.Set || strings.TrimSpace(f.S) == "" {
		return nil, nil
	}
	t, err := ParseTime(f.S)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func refParseDuration(raw json.RawMessage) (int64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		return refParseDurationText(s)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f > maxDurationSeconds {
		return 0, fmt.Errorf("not a duration: %.40s", raw)
	}
	return int64(f), nil
}

func refParseDurationText(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if !strings.Contains(s, ":") {
		f, err := strconv.ParseFloat(s, 64)
		// The one change from the original: "NaN" was read as a negative
		// duration (found by FuzzDecodeDifferential's seeds); both reject it.
		if err != nil || f != f || f < 0 || f > maxDurationSeconds {
			return 0, fmt.Errorf("not a duration: %q", s)
		}
		return int64(f), nil
	}
	var days int64
	if d, rest, ok := strings.Cut(s, ","); ok {
		// Python timedelta: "1 day, 0:05:25" or "2 days, 0:05:25".
		n, unit, _ := strings.Cut(strings.TrimSpace(d), " ")
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil || v < 0 || v > 36500 || !strings.HasPrefix(strings.TrimSpace(unit), "day") {
			return 0, fmt.Errorf("not a duration: %q", s)
		}
		days, s = v, strings.TrimSpace(rest)
	}
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, fmt.Errorf("not a duration: %q", s)
	}
	var total int64
	for i, p := range parts {
		if i == len(parts)-1 {
			p, _, _ = strings.Cut(p, ".") // fractional seconds are dropped
		}
		if p == "" || len(p) > 6 || strings.TrimLeft(p, "0123456789") != "" {
			return 0, fmt.Errorf("not a duration: %q", s)
		}
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || (i > 0 && v > 59) {
			return 0, fmt.Errorf("not a duration: %q", s)
		}
		total = total*60 + v
	}
	return days*86400 + total, nil
}
