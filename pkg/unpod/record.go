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
// "no_answer", and other spellings occur (see NormalizeStatus);
// Record.RawStatus keeps what was sent.
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
	return durationNumber(string(raw))
}

// durationOf is ParseDuration for a value the scanner has already checked:
// it skips the unquoting copy for strings without escapes (unquoting changes
// nothing there that parseDurationText could tell apart).
func durationOf(v string) (int64, error) {
	switch {
	case v == "" || v == "null":
		return 0, nil
	case v[0] == '"' && strings.IndexByte(v, '\\') < 0:
		return parseDurationText(v[1 : len(v)-1])
	case v[0] == '-' || isDigit(v[0]):
		return durationNumber(v)
	}
	return ParseDuration(json.RawMessage(v))
}

// maxDurationSeconds bounds durations to keep arithmetic far from overflow;
// no call lasts a century.
const maxDurationSeconds = 100 * 365 * 24 * 3600

// durationNumber reads a duration given as a JSON number.
func durationNumber(s string) (int64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > maxDurationSeconds {
		return 0, fmt.Errorf("not a duration: %.40s", s)
	}
	return int64(f), nil
}

func parseDurationText(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if !strings.Contains(s, ":") {
		f, err := strconv.ParseFloat(s, 64)
		// ParseFloat reads "NaN", which passes both bounds and would
		// convert to a negative int64.
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
	// [H:]MM:SS[.ffffff], walked with Cut rather than Split to spare an
	// allocation per record.
	parts := strings.Count(s, ":") + 1
	if parts < 2 || parts > 3 {
		return 0, fmt.Errorf("not a duration: %q", s)
	}
	var total int64
	rest := s
	for i := 0; i < parts; i++ {
		var p string
		p, rest, _ = strings.Cut(rest, ":")
		if i == parts-1 {
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

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
