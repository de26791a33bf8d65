package unpod

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Normalised call statuses. The API also spells "missed" as "no-answer" or
// "no_answer"; Record.RawStatus keeps what was sent.
const (
	StatusCompleted = "completed"
	StatusMissed    = "missed"
	StatusFailed    = "failed"
)

// Record is one call log as the API sent it, normalised.
type Record struct {
	ID                string          // API "id" when present, else ""
	SourceNumber      string          // as sent
	DestinationNumber string          // as sent
	CallType          string          // "inbound" / "outbound" (lower-cased as sent)
	CallStatus        string          // normalised: "completed" / "missed" / "failed"
	RawStatus         string          // exactly as sent, e.g. "no-answer"
	CreationTime      time.Time       // UTC, full precision
	StartTime         *time.Time      // UTC or nil
	EndTime           *time.Time      // UTC or nil
	DurationSeconds   int64           // from 207 or "0:05:25"
	EndReason         string          // as sent
	Raw               json.RawMessage // the record's JSON exactly as received, byte for byte
}

// Page is one decoded page of call logs.
type Page struct {
	Count   int           // the API's "count": total matching records over all pages
	Records []Record      // the good records, in API order
	Invalid []RecordError // records that could not be made sense of; the rest of the page is still returned
}

// RecordError names a record that could not be decoded. Raw keeps the
// record's bytes so that nothing is lost: a caller can park it elsewhere.
type RecordError struct {
	Page  int             // 1-based page number the record came from (0 when unknown)
	Index int             // 0-based position in the page's data array
	Raw   json.RawMessage // the record's JSON exactly as received
	Err   error           // what was wrong with it
}

// Error implements error.
func (e RecordError) Error() string {
	return fmt.Sprintf("unpod: page %d record %d: %v", e.Page, e.Index, e.Err)
}

// Unwrap returns the underlying decoding error.
func (e RecordError) Unwrap() error { return e.Err }

// Organization is one organization a token can see.
type Organization struct {
	Handle string          // the API's "domain_handle": the value of the Org-Handle header
	Name   string          // display name
	Raw    json.RawMessage // the organization's JSON exactly as received
}

// ErrMalformed marks a response body that is not a page at all (truncated
// JSON, an HTML error page, a missing data array). It says nothing about
// single records: those go to Page.Invalid.
var ErrMalformed = errors.New("unpod: malformed response body")

// envelope is the response wrapper shared by both endpoints.
type envelope struct {
	Count      *int              `json:"count"`
	StatusCode int               `json:"status_code"`
	Message    string            `json:"message"`
	Data       []json.RawMessage `json:"data"`
}

// DecodePage decodes a call-logs response body. page is the 1-based page
// number, used only to label RecordErrors. A body that is not an envelope with
// a count and a data array is an error wrapping ErrMalformed, except an error
// envelope ({"status_code": 401, "message": ...} sent with HTTP 200), which
// is an *APIError; a record that cannot be decoded is put in Page.Invalid and
// the others are still returned.
func DecodePage(body []byte, page int) (*Page, error) {
	var env envelope
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
		rec, err := DecodeRecord(raw)
		if err != nil {
			p.Invalid = append(p.Invalid, RecordError{Page: page, Index: i, Raw: raw, Err: err})
			continue
		}
		p.Records = append(p.Records, rec)
	}
	return p, nil
}

// wireRecord is a call log with every field typed loosely, so that variants
// of the API decode; unknown fields are ignored here and kept in Raw.
type wireRecord struct {
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

// flexString accepts a JSON string, number or null.
type flexString struct {
	S   string
	Set bool // false for null or absent
}

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*f = flexString{}
		return nil
	case len(b) > 1 && b[0] == '"' && b[len(b)-1] == '"' && bytes.IndexByte(b, '\\') < 0:
		// No escapes: the JSON string is its own text (the decoder has
		// already checked the syntax).
		*f = flexString{S: string(b[1 : len(b)-1]), Set: true}
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString{S: s, Set: true}
		return nil
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		*f = flexString{S: string(b), Set: true}
		return nil
	}
	return fmt.Errorf("want a string, number or null, got %.20s", b)
}

// DecodeRecord decodes one call log object. It needs a parseable
// creation_time and a known call_status; everything else is optional, and
// unknown fields are ignored (they stay in Raw).
func DecodeRecord(raw json.RawMessage) (Record, error) {
	var w wireRecord
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
	if rec.StartTime, err = parseOptionalTime(w.StartTime); err != nil {
		return Record{}, fmt.Errorf("start_time: %w", err)
	}
	if rec.EndTime, err = parseOptionalTime(w.EndTime); err != nil {
		return Record{}, fmt.Errorf("end_time: %w", err)
	}
	status, ok := NormalizeStatus(w.CallStatus.S)
	if !ok {
		return Record{}, fmt.Errorf("unknown call_status %q", w.CallStatus.S)
	}
	rec.CallStatus = status
	if rec.DurationSeconds, err = ParseDuration(w.CallDuration); err != nil {
		return Record{}, fmt.Errorf("call_duration: %w", err)
	}
	return rec, nil
}

// NormalizeStatus maps the API's status spellings to completed, missed or
// failed. It reports false for a status it does not know.
func NormalizeStatus(s string) (string, bool) {
	key := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '-' || c == '_' || c == ' ' || c == '\t':
		case c >= 'A' && c <= 'Z':
			key = append(key, c+'a'-'A')
		default:
			key = append(key, c)
		}
	}
	switch string(key) {
	case "completed", "complete", "answered":
		return StatusCompleted, true
	case "missed", "noanswer", "unanswered":
		return StatusMissed, true
	case "failed", "failure", "error":
		return StatusFailed, true
	}
	return "", false
}

// timeLayouts are the ISO 8601 shapes seen or plausible; times without a
// zone are taken as UTC.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02",
}

// ParseTime parses an ISO 8601 timestamp from the API and returns it in UTC.
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not an ISO 8601 time: %q", s)
}

func parseOptionalTime(f flexString) (*time.Time, error) {
	if !f.Set || strings.TrimSpace(f.S) == "" {
		return nil, nil
	}
	t, err := ParseTime(f.S)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// ParseDuration reads call_duration in whole seconds from any of its forms:
// an integer (207), a number (207.4, truncated), a numeric string ("207"), a
// clock string ("0:05:25", "05:25", "0:05:25.120000") or Python's timedelta
// text ("1 day, 0:05:25"). Absent, null or "" is 0.
func ParseDuration(raw json.RawMessage) (int64, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return 0, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		return parseDurationText(s)
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f > maxDurationSeconds {
		return 0, fmt.Errorf("not a duration: %.40s", raw)
	}
	return int64(f), nil
}

// maxDurationSeconds bounds durations to keep arithmetic far from overflow;
// no call lasts a century.
const maxDurationSeconds = 100 * 365 * 24 * 3600

func parseDurationText(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if !strings.Contains(s, ":") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || f > maxDurationSeconds {
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
