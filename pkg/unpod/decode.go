package unpod

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/callstream/callstream/pkg/jsonscan"
)

// Decoding reads a page in one pass with a validating scanner instead of
// json.Unmarshal into []json.RawMessage and then once more per record: the
// reflection and the second pass cost ~15 us per record, most of the
// producer's CPU. The rules are still encoding/json's (member names match
// case-insensitively, the last duplicate wins, null leaves a field unset),
// and FuzzDecodeDifferential holds this decoder to the json.Unmarshal one.

// DecodePage decodes a call-logs response body. page is the 1-based page
// number, used only to label RecordErrors. A body that is not an envelope with
// a count and a data array is an error wrapping ErrMalformed, except an error
// envelope ({"status_code": 401, "message": ...} sent with HTTP 200), which
// is an *APIError; a record that cannot be decoded is put in Page.Invalid and
// the others are still returned.
//
// The page keeps no reference to body: each Record's Raw and strings point
// into two copies of it made once per page, so any one of them keeps that
// page's memory alive. A caller that keeps a field for long (a cache key, say)
// should strings.Clone it.
//
// Statuses are mapped with the default mapping (see NormalizeStatus); a
// Client decodes with its Config.StatusMap over it. Records are sanitised
// (see RawBase64Member).
func DecodePage(body []byte, page int) (*Page, error) { return decodePage(body, page, nil) }

func decodePage(body []byte, page int, statuses *statusTable) (*Page, error) {
	d := pageDecoder{sc: jsonscan.New(string(body)), body: body, page: page, statuses: statuses}
	p, err := d.decode()
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: page %d: %v", ErrMalformed, page, err)
	}
	return p, nil
}

// pageDecoder holds the state of one DecodePage call.
type pageDecoder struct {
	sc       jsonscan.Scanner[string] // over a string copy of body: record strings are substrings of it
	body     []byte                   // the caller's body; never retained
	raw      []byte                   // a copy of body that Record.Raw slices point into, made on first use
	page     int
	times    timeSlab
	statuses *statusTable
}

func (d *pageDecoder) decode() (*Page, error) {
	sc := &d.sc
	sc.Space()
	if sc.Peek() != '{' {
		return nil, sc.Fail("want a JSON object")
	}
	var (
		count      *int
		statusCode int
		message    string
		haveData   bool // false for a missing or null data, as json leaves the slice nil then
		p          = &Page{}
	)
	more, err := sc.Enter('{')
	if err != nil {
		return nil, err
	}
	for more {
		name, flags, err := sc.Key()
		if err != nil {
			return nil, err
		}
		sc.Space()
		switch matchName(name, flags&jsonscan.Escaped != 0, envelopeField) {
		case fieldCount:
			err = d.unmarshal(&count)
		case fieldStatusCode:
			err = d.unmarshal(&statusCode)
		case fieldMessage:
			err = d.unmarshal(&message)
		case fieldData:
			switch sc.Peek() {
			case 'n':
				err = sc.Literal("null")
				haveData, p.Records, p.Invalid = false, nil, nil
			case '[':
				// A repeated data member replaces the earlier one, as in encoding/json.
				haveData = true
				err = d.records(p, count)
			default:
				if err = sc.Value(); err == nil {
					err = errors.New(`"data" is not an array`)
				}
			}
		default:
			err = sc.Value()
		}
		if err != nil {
			return nil, err
		}
		if more, err = sc.More('}'); err != nil {
			return nil, err
		}
	}
	if err := sc.End(); err != nil {
		return nil, err
	}
	if !haveData && statusCode >= 400 {
		// Some gateways answer 200 with the error in the body.
		return nil, &APIError{Status: statusCode, Message: message}
	}
	if count == nil {
		return nil, errors.New(`no "count" field`)
	}
	if !haveData {
		return nil, errors.New(`no "data" array`)
	}
	p.Count = *count
	return p, nil
}

// unmarshal decodes the value at the read offset into v with encoding/json,
// for the few envelope members, whose type rules it then applies exactly.
func (d *pageDecoder) unmarshal(v any) error {
	start := d.sc.Offset()
	if err := d.sc.Value(); err != nil {
		return err
	}
	return json.Unmarshal(d.body[start:d.sc.Offset()], v)
}

// minRecordLen is the shortest text a good record can have,
// {"call_status":"error","creation_time":"2006-01-02"}, plus a comma: it
// bounds the Records capacity that a lying count can ask for.
const minRecordLen = 53

// records decodes the data array at the read offset into p.
func (d *pageDecoder) records(p *Page, count *int) error {
	sc := &d.sc
	more, err := sc.Enter('[')
	if err != nil {
		return err
	}
	hint := 0
	if count != nil {
		hint = max(0, min(*count, len(sc.Source())/minRecordLen+1))
	}
	p.Records, p.Invalid = make([]Record, 0, hint), nil
	d.times.block = 2 * hint
	if !more {
		return nil
	}
	if d.raw == nil {
		d.raw = append([]byte(nil), d.body...)
	}
	for i := 0; ; i++ {
		sc.Space()
		start := sc.Offset()
		var w wireRecord
		bad, err := callLog(sc, &w)
		if err != nil {
			return err
		}
		// The full slice expression keeps an append to one Raw from
		// overwriting the next record's bytes.
		end := sc.Offset()
		raw := json.RawMessage(d.raw[start:end:end])
		if bad == nil {
			// Decoding in place saves copying each Record into the slice.
			p.Records = append(p.Records, Record{})
			rec := &p.Records[len(p.Records)-1]
			if bad = w.decode(rec, &d.times, d.statuses); bad == nil {
				rec.Raw = raw
				sanitize(rec)
			} else {
				p.Records = p.Records[:len(p.Records)-1]
			}
		}
		if bad != nil {
			p.Invalid = append(p.Invalid, RecordError{Page: d.page, Index: i, Raw: raw, Err: bad})
		}
		if more, err := sc.More(']'); err != nil || !more {
			return err
		}
	}
}

// DecodeRecord decodes one call log object. It needs a parseable
// creation_time and a known call_status (by the default mapping);
// everything else is optional, and unknown fields are ignored (they stay in
// Raw, which is raw itself, sanitised as RawBase64Member says).
func DecodeRecord(raw json.RawMessage) (Record, error) { return decodeRecord(raw, nil) }

// DecodeRecord is the package's DecodeRecord with the client's
// Config.StatusMap: the decoding of the records of its pages.
func (c *Client) DecodeRecord(raw json.RawMessage) (Record, error) {
	return decodeRecord(raw, c.statuses)
}

func decodeRecord(raw json.RawMessage, statuses *statusTable) (Record, error) {
	sc := jsonscan.New(string(raw))
	var w wireRecord
	bad, err := callLog(&sc, &w)
	if err == nil {
		err = sc.End()
	}
	if err != nil {
		return Record{}, fmt.Errorf("decode call log: %w", err)
	}
	if bad != nil {
		return Record{}, bad
	}
	var rec Record
	if err := w.decode(&rec, nil, statuses); err != nil {
		return Record{}, err
	}
	rec.Raw = raw
	sanitize(&rec)
	return rec, nil
}

// wireRecord is a call log's members as sent, before normalising.
type wireRecord struct {
	ID, SourceNumber, DestinationNumber, CallType, CallStatus flexString
	CreationTime, StartTime, EndTime, EndReason               flexString
	CallDuration                                              string // the member's JSON text, "" when absent
}

func (w *wireRecord) member(f field) *flexString {
	switch f {
	case fieldID:
		return &w.ID
	case fieldSource:
		return &w.SourceNumber
	case fieldDestination:
		return &w.DestinationNumber
	case fieldCallType:
		return &w.CallType
	case fieldCallStatus:
		return &w.CallStatus
	case fieldCreationTime:
		return &w.CreationTime
	case fieldStartTime:
		return &w.StartTime
	case fieldEndTime:
		return &w.EndTime
	case fieldEndReason:
		return &w.EndReason
	}
	return nil
}

// decode normalises w into rec, or says why w is not a call log. Times
// are checked before statuses before durations, so that a record with several
// faults names the same one as it always has.
func (w *wireRecord) decode(rec *Record, times *timeSlab, statuses *statusTable) error {
	if !w.CreationTime.Set || strings.TrimSpace(w.CreationTime.S) == "" {
		return errors.New("call log has no creation_time")
	}
	created, err := ParseTime(w.CreationTime.S)
	if err != nil {
		return fmt.Errorf("creation_time: %w", err)
	}
	start, hasStart, err := optionalTime(w.StartTime)
	if err != nil {
		return fmt.Errorf("start_time: %w", err)
	}
	end, hasEnd, err := optionalTime(w.EndTime)
	if err != nil {
		return fmt.Errorf("end_time: %w", err)
	}
	status, ok := statuses.normalize(w.CallStatus.S)
	if !ok {
		return &statusError{status: w.CallStatus.S}
	}
	dur, err := durationOf(w.CallDuration)
	if err != nil {
		return fmt.Errorf("call_duration: %w", err)
	}
	*rec = Record{
		ID:                w.ID.S,
		SourceNumber:      w.SourceNumber.S,
		DestinationNumber: w.DestinationNumber.S,
		CallType:          strings.ToLower(strings.TrimSpace(w.CallType.S)),
		CallStatus:        status,
		RawStatus:         w.CallStatus.S,
		CreationTime:      created,
		DurationSeconds:   dur,
		EndReason:         w.EndReason.S,
	}
	if hasStart {
		rec.StartTime = times.ptr(start)
	}
	if hasEnd {
		rec.EndTime = times.ptr(end)
	}
	return nil
}

// optionalTime parses a nullable time; null, absent and blank are none.
func optionalTime(f flexString) (time.Time, bool, error) {
	if !f.Set || strings.TrimSpace(f.S) == "" {
		return time.Time{}, false, nil
	}
	t, err := ParseTime(f.S)
	return t, err == nil, err
}

// timeSlab hands out *time.Time from shared blocks: one allocation per block
// instead of one per start and end time of every record. A nil slab
// allocates each one.
type timeSlab struct {
	free  []time.Time
	block int // size of the next block; a page sets it from its count
}

func (ts *timeSlab) ptr(t time.Time) *time.Time {
	if ts == nil {
		return newTime(t)
	}
	if len(ts.free) == 0 {
		ts.free = make([]time.Time, min(max(ts.block, 16), 2048))
	}
	p := &ts.free[0]
	*p = t
	ts.free = ts.free[1:]
	return p
}

// newTime is apart from timeSlab.ptr so that ptr's argument does not
// escape, which would cost an allocation on every call.
func newTime(t time.Time) *time.Time { return &t }

// callLog consumes the value at the read offset as a call log into w. err
// is bad JSON, which ends the page. bad is JSON that is not a call log (not an
// object, or a member of the wrong type); the value is still consumed whole so
// that the page goes on.
func callLog(sc *jsonscan.Scanner[string], w *wireRecord) (bad, err error) {
	sc.Space()
	switch sc.Peek() {
	case '{':
	case 'n':
		// encoding/json decodes null into a struct as no members at all.
		return nil, sc.Literal("null")
	default:
		start := sc.Offset()
		if err := sc.Value(); err != nil {
			return nil, err
		}
		return fmt.Errorf("decode call log: want an object, got %.20s", sc.Source()[start:sc.Offset()]), nil
	}
	if more, err := sc.Enter('{'); err != nil || !more {
		return nil, err
	}
	for {
		name, flags, err := sc.Key()
		if err != nil {
			return nil, err
		}
		sc.Space()
		f := fieldUnknown
		if bad == nil {
			// encoding/json stops at the first bad member; the rest is only checked as JSON.
			f = matchName(name, flags&jsonscan.Escaped != 0, recordField)
		}
		switch f {
		case fieldUnknown:
			err = sc.Value()
		case fieldDuration:
			start := sc.Offset()
			err = sc.Value()
			w.CallDuration = sc.Source()[start:sc.Offset()]
		default:
			bad, err = flex(sc, w.member(f))
		}
		if err != nil {
			return nil, err
		}
		more, err := sc.More('}')
		if err != nil {
			return nil, err
		}
		if !more {
			return bad, nil
		}
	}
}

// flex consumes a string, number or null into f, as flexString.UnmarshalJSON
// would; another value is bad.
func flex(sc *jsonscan.Scanner[string], f *flexString) (bad, err error) {
	start := sc.Offset()
	switch c := sc.Peek(); {
	case c == '"':
		flags, err := sc.Quoted()
		if err != nil {
			return nil, err
		}
		// Invalid UTF-8 is taken as it is here; sanitize replaces it and
		// keeps the original (see RawBase64Member).
		if flags&jsonscan.Escaped == 0 {
			*f = flexString{S: sc.Source()[start+1 : sc.Offset()-1], Set: true}
			return nil, nil
		}
		var s string
		if err := json.Unmarshal([]byte(sc.Source()[start:sc.Offset()]), &s); err != nil {
			return fmt.Errorf("decode call log: %w", err), nil
		}
		*f = flexString{S: s, Set: true}
	case c == '-' || isDigit(c):
		if err := sc.Number(); err != nil {
			return nil, err
		}
		*f = flexString{S: sc.Source()[start:sc.Offset()], Set: true}
	case c == 'n':
		if err := sc.Literal("null"); err != nil {
			return nil, err
		}
		*f = flexString{}
	default:
		if err := sc.Value(); err != nil {
			return nil, err
		}
		return fmt.Errorf("decode call log: want a string, number or null, got %.20s", sc.Source()[start:sc.Offset()]), nil
	}
	return nil, nil
}
