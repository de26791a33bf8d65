package schemas

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// bad notes why a field is refused; build reports them all, in schema order.
func (d *callDecoder) bad(f callField, why string) {
	if d.errs[f] == "" {
		d.nerrs++
	}
	d.errs[f] = why
}

// wrongKind is bad for a value of the wrong JSON type.
func (d *callDecoder) wrongKind(f callField, want string) {
	if k := d.members[f].kind; k == kindAbsent {
		d.bad(f, "missing")
	} else {
		d.bad(f, "want "+want+", got "+kindNames[k])
	}
}

// text returns the JSON text of field f's value.
func (d *callDecoder) text(f callField) string {
	m := d.members[f]
	return d.sc.Source()[m.start:m.end]
}

// str returns field f's string value. A verbatim string is a substring of
// the payload's copy; escapes and non-ASCII bytes go through encoding/json,
// so the value is exactly its.
func (d *callDecoder) str(f callField) (string, bool) {
	switch d.members[f].kind {
	case kindString:
		m := d.members[f]
		return d.sc.Source()[m.start+1 : m.end-1], true
	case kindUnquoted:
		return unquote(d.text(f)), true
	}
	d.wrongKind(f, "a string")
	return "", false
}

// unquote decodes a JSON string the scanner has checked, as encoding/json
// does (invalid UTF-8 and lone surrogates become U+FFFD).
func unquote(quoted string) string {
	var s string
	if json.Unmarshal([]byte(quoted), &s) != nil {
		return "" // cannot happen: the scanner checked the string
	}
	return s
}

// integer returns field f's value as an integer of bits bits, by
// encoding/json's rules for Go integers: no fraction or exponent, in range.
func (d *callDecoder) integer(f callField, bits int) (int64, bool) {
	if d.members[f].kind != kindNumber {
		d.wrongKind(f, "an integer")
		return 0, false
	}
	n, err := strconv.ParseInt(d.text(f), 10, bits)
	if err != nil {
		d.bad(f, fmt.Sprintf("%.40s is not an integer of %d bits", d.text(f), bits))
		return 0, false
	}
	return n, true
}

// timestamp returns field f's value as a time; null counts as a time only when
// nullable, and then returns false with no error noted.
func (d *callDecoder) timestamp(f callField, nullable bool) (time.Time, bool) {
	switch k := d.members[f].kind; {
	case k == kindNull && nullable:
		return time.Time{}, false
	case k == kindString || k == kindUnquoted:
		t := d.text(f)
		if tm, ok := parseTime(t[1 : len(t)-1]); ok {
			return tm, true
		}
		d.bad(f, fmt.Sprintf("%.40s is not an RFC 3339 time", t))
		return time.Time{}, false
	}
	if nullable {
		d.wrongKind(f, "an RFC 3339 time or null")
	} else {
		d.wrongKind(f, "an RFC 3339 time")
	}
	return time.Time{}, false
}

// pointers holds what CallEvent's pointer fields point to, so that one
// allocation serves all three.
type pointers struct {
	callID     string
	start, end time.Time
}

// build fills e from the members scan found and checks them against the
// schema, noting every fault before reporting them together.
func (d *callDecoder) build(e *CallEvent) error {
	if d.top != kindObject {
		return fmt.Errorf("%w: call event: want an object, got %s", ErrSchema, kindNames[d.top])
	}
	var ok bool
	if e.EventID, ok = d.str(fieldEventID); ok && !isUUID(e.EventID) {
		d.bad(fieldEventID, fmt.Sprintf("%.40q is not a UUID", e.EventID))
	}
	if e.Org, ok = d.str(fieldOrg); ok && e.Org == "" {
		d.bad(fieldOrg, "empty")
	}
	if e.CallKey, ok = d.str(fieldCallKey); ok && e.CallKey == "" {
		d.bad(fieldCallKey, "empty")
	}
	if n, ok := d.integer(fieldRevision, strconv.IntSize); ok {
		if n < 1 {
			d.bad(fieldRevision, "below 1")
		}
		e.Revision = int(n)
	}
	var p *pointers
	box := func() *pointers {
		if p == nil {
			p = new(pointers)
		}
		return p
	}
	switch d.members[fieldCallID].kind {
	case kindNull:
	case kindString, kindUnquoted:
		b := box()
		b.callID, _ = d.str(fieldCallID)
		e.CallID = &b.callID
	default:
		d.wrongKind(fieldCallID, "a string or null")
	}
	e.SourceNumber, _ = d.str(fieldSource)
	e.DestinationNumber, _ = d.str(fieldDestination)
	if e.CallType, ok = d.str(fieldCallType); ok && e.CallType != CallInbound && e.CallType != CallOutbound {
		d.bad(fieldCallType, fmt.Sprintf("%.40q is not inbound or outbound", e.CallType))
	}
	if e.CallStatus, ok = d.str(fieldCallStatus); ok &&
		e.CallStatus != StatusCompleted && e.CallStatus != StatusMissed && e.CallStatus != StatusFailed {
		d.bad(fieldCallStatus, fmt.Sprintf("%.40q is not completed, missed or failed", e.CallStatus))
	}
	e.CreationTime, _ = d.timestamp(fieldCreationTime, false)
	if t, ok := d.timestamp(fieldStartTime, true); ok {
		b := box()
		b.start = t
		e.StartTime = &b.start
	}
	if t, ok := d.timestamp(fieldEndTime, true); ok {
		b := box()
		b.end = t
		e.EndTime = &b.end
	}
	if n, ok := d.integer(fieldDuration, 64); ok {
		if n < 0 {
			d.bad(fieldDuration, "negative")
		}
		e.CallDurationSeconds = n
	}
	e.EndReason, _ = d.str(fieldEndReason)
	e.ObservedAt, _ = d.timestamp(fieldObservedAt, false)
	if d.members[fieldRaw].kind == kindObject {
		m := d.members[fieldRaw]
		e.Raw = json.RawMessage(d.buf[m.start:m.end:m.end])
	} else {
		d.wrongKind(fieldRaw, "an object")
	}
	if d.nerrs > 0 {
		return d.err()
	}
	return nil
}

// err reports every fault build noted, in schema order.
func (d *callDecoder) err() error {
	var b strings.Builder
	for f, why := range d.errs {
		if why == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(callFieldNames[f])
		b.WriteString(": ")
		b.WriteString(why)
	}
	return fmt.Errorf("%w: call event: %s", ErrSchema, b.String())
}

// isUUID reports whether s is 8-4-4-4-12 hexadecimal digits, as the
// schema's uuid format wants.
func isUUID(s string) bool {
	if len(s) != len(uuidPattern) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if uuidClass[s[i]] != uuidPattern[i] {
			return false
		}
	}
	return true
}

// uuidPattern is the class of each byte of a UUID: x a hexadecimal digit.
const uuidPattern = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"

// uuidClass maps a byte to its class in uuidPattern, 0 for neither.
var uuidClass = func() (t [256]byte) {
	for _, c := range "0123456789abcdefABCDEF" {
		t[c] = 'x'
	}
	t['-'] = '-'
	return t
}()
