package schemas

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/callstream/callstream/pkg/jsonscan"
)

// Errors of DecodeCall. Every error it returns wraps exactly one of them, so
// a caller tells a payload that is not JSON from JSON that is not a call
// event with errors.Is, without parsing the payload again. Their texts start
// the errors' texts.
var (
	// ErrNotJSON marks a payload json.Valid would refuse.
	ErrNotJSON = errors.New("not JSON")
	// ErrSchema marks valid JSON that call_event.v1.json refuses.
	ErrSchema = errors.New("schema violation")
)

// DecodeCall decodes a call event and checks it against call_event.v1.json,
// in one pass over data with no reflection: every consumer runs it on every
// message. A test holds it to ValidateCall's verdicts and a fuzz test to the
// json.Unmarshal decoder it replaced. The JSON rules are encoding/json's
// (what is valid, string escapes, invalid UTF-8 read as U+FFFD), with the
// schema's reading of a document where encoding/json's struct decoding
// differs from it:
//
//   - Member names match exactly, as the schema's properties do; encoding/json
//     also matched "ORG" or "Event_ID" to a field, accepting documents the
//     schema refuses.
//   - Of duplicate members the last one counts, wholly: an earlier value of
//     the wrong type is forgotten, as the schema forgets it.
//   - Times are RFC 3339 as the schema's date-time format and time.Time's
//     JSON decoding both read it, yyyy-mm-ddThh:mm:ss[.frac](Z|±hh:mm); the
//     looser forms time.Parse also let through (one-digit hours, a comma
//     before the fraction, offsets past 23:59) are refused.
//
// DecodeCall stays stricter than the schema where time.Time and Go integers
// are: integers written 1.0 or 1e0 or beyond int64, leap seconds, a
// lower-case t or z, and escapes inside a time are refused.
//
// Retention: the event keeps nothing of data, which the caller may reuse
// or change as soon as DecodeCall returns (the event stays valid however
// long a plug-in keeps its Delivery; DecodeCallInPlace trades that for
// speed). The event's strings and Raw share one copy of data instead: keeping any one of them keeps that copy, about the
// payload's size, alive. A consumer that keeps a field longer than the event
// (an alerting group label, a cache key) should strings.Clone it. Raw is
// shared by every copy of the event; treat it as read-only.
func (v *Validator) DecodeCall(data []byte) (CallEvent, error) {
	return decodeCall(append(make([]byte, 0, len(data)), data...))
}

// DecodeCallInPlace is DecodeCall without the copy: the event's strings and
// Raw point into data itself, which saves about a quarter of DecodeCall's
// CPU (the copy and the garbage collection of it; see BenchmarkDecodeCall).
// In exchange, data must not change while the event or any string of it is
// in use, for the strings would change with it. The consumer runtime can
// meet that for a delivered message: a Delivery holds the message, so its
// payload lives as long as the event anyway, and nothing writes to a
// payload once it is received (watermill already shares one payload between
// a message's copies). Whoever keeps a field past the Delivery should
// strings.Clone it, as with DecodeCall.
func (v *Validator) DecodeCallInPlace(data []byte) (CallEvent, error) {
	return decodeCall(data)
}

// decodeCall decodes buf, which the event's strings and Raw then point
// into. They view it through unsafe.String, which is sound as long as
// nothing writes to those bytes: DecodeCall passes a copy nobody else has,
// DecodeCallInPlace passes on its caller's promise. Raw is a []byte over
// buf, but its bytes are disjoint from every string's (two members' values
// never overlap) and its capacity ends where it does, so writing to Raw or
// appending to it cannot reach a string.
func decodeCall(buf []byte) (CallEvent, error) {
	d := callDecoder{sc: jsonscan.New(unsafe.String(unsafe.SliceData(buf), len(buf))), buf: buf}
	if err := d.scan(); err != nil {
		return CallEvent{}, fmt.Errorf("%w: call event: %w", ErrNotJSON, err)
	}
	var e CallEvent
	if err := d.build(&e); err != nil {
		return CallEvent{}, err
	}
	return e, nil
}

// callField is a member of a call event, in the schema's order.
type callField uint8

const (
	fieldEventID callField = iota
	fieldOrg
	fieldCallKey
	fieldRevision
	fieldCallID
	fieldSource
	fieldDestination
	fieldCallType
	fieldCallStatus
	fieldCreationTime
	fieldStartTime
	fieldEndTime
	fieldDuration
	fieldEndReason
	fieldObservedAt
	fieldRaw
	numFields
	fieldUnknown = numFields
)

// callFieldNames are the member names, by field.
var callFieldNames = [numFields]string{
	"event_id", "org", "call_key", "revision", "call_id", "source_number", "destination_number",
	"call_type", "call_status", "creation_time", "start_time", "end_time", "call_duration_seconds",
	"end_reason", "observed_at", "raw",
}

// quotedFieldNames are the member names' JSON texts, by field.
var quotedFieldNames = func() (q [numFields]string) {
	for f, name := range callFieldNames {
		q[f] = `"` + name + `"`
	}
	return q
}()

// valueKind is the JSON type of a member's value; kindAbsent for a member
// the document does not have.
type valueKind uint8

const (
	kindAbsent   valueKind = iota
	kindString             // a string whose text between the quotes is its value
	kindUnquoted           // a string to decode: escapes or non-ASCII bytes
	kindNumber
	kindNull
	kindBool
	kindObject
	kindArray
)

var kindNames = [...]string{kindString: "a string", kindUnquoted: "a string", kindNumber: "a number",
	kindNull: "null", kindBool: "a boolean", kindObject: "an object", kindArray: "an array"}

// member is where the last value of a member lies in the document.
type member struct {
	kind       valueKind
	start, end int // the value's JSON text is src[start:end]
}

// callDecoder holds the state of one DecodeCall.
type callDecoder struct {
	sc      jsonscan.Scanner[string] // over buf, which strings point into
	buf     []byte                   // the payload's bytes (a copy, for DecodeCall)
	members [numFields]member
	top     valueKind // the top-level value's kind
	errs    [numFields]string
	nerrs   int
}

// scan reads the whole document, noting where each known member's value
// lies; it fails only on bad JSON. A document that is JSON but not an
// object is left for build to refuse.
func (d *callDecoder) scan() error {
	sc := &d.sc
	sc.Space()
	if sc.Peek() != '{' {
		start := sc.Offset()
		if err := sc.Value(); err != nil {
			return err
		}
		d.top = kindOf(sc.Source()[start])
		return sc.End()
	}
	d.top = kindObject
	more, err := sc.Enter('{')
	next := callField(0) // the producer writes the members in schema order: try that first
	for err == nil && more {
		f := next
		if next >= numFields || !sc.KeyIs(quotedFieldNames[next]) {
			var quoted string
			var flags jsonscan.Flags
			if quoted, flags, err = sc.Key(); err != nil {
				return err
			}
			f = lookupField(quoted, flags)
		}
		next = f + 1
		sc.Space()
		start := sc.Offset()
		var k valueKind
		if k, err = d.value(); err != nil {
			return err
		}
		if f != fieldUnknown {
			d.members[f] = member{kind: k, start: start, end: sc.Offset()}
		}
		more, err = sc.More('}')
	}
	if err != nil {
		return err
	}
	return sc.End()
}

// lookupField finds the field a member name (its JSON text, quotes
// included) names, exactly, as the schema reads names: only decoding
// escapes (or invalid UTF-8, into U+FFFD) can make two spellings one.
func lookupField(quoted string, flags jsonscan.Flags) callField {
	name := quoted[1 : len(quoted)-1]
	if !flags.Verbatim() {
		name = unquote(quoted)
	}
	for f, n := range callFieldNames {
		if n == name {
			return callField(f)
		}
	}
	return fieldUnknown
}

// value consumes the value at the read offset and returns its kind.
func (d *callDecoder) value() (valueKind, error) {
	sc := &d.sc
	switch c := sc.Peek(); {
	case c == '"':
		flags, err := sc.Quoted()
		if flags.Verbatim() {
			return kindString, err
		}
		return kindUnquoted, err
	case c == '-' || '0' <= c && c <= '9':
		return kindNumber, sc.Number()
	case c == 'n':
		return kindNull, sc.Literal("null")
	}
	k := kindOf(sc.Peek())
	return k, sc.Value()
}

// kindOf returns the kind of the value starting with c, in valid JSON.
func kindOf(c byte) valueKind {
	switch {
	case c == '"':
		return kindString
	case c == '{':
		return kindObject
	case c == '[':
		return kindArray
	case c == 't' || c == 'f':
		return kindBool
	case c == 'n':
		return kindNull
	}
	return kindNumber
}
