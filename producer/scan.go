package producer

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/callstream/callstream/schemas"
)

// topicEntry is what a restore needs of an event on the topic: where the
// call stands (org, call key, revision), the fields the content hash is
// recomputed from (the value carries every normalised field) and the
// creation time, for eviction.
type topicEntry struct {
	eventID    []byte
	revision   int
	content    fields[[]byte]
	start, end time.Time // where content.start and content.end point, when set
}

// scanEvent reads an event encoded in the schema's field order (as every
// event this package writes is) without a JSON decoder and without copying
// its text, which makes rebuilding the dedup memory several times faster.
// It reports false for anything unexpected, escapes included; the caller
// then decodes the value properly with decodeEntry. e must not be copied
// after the call: content.start and content.end point into it.
func scanEvent(v []byte, e *topicEntry) bool {
	*e = topicEntry{}
	c := &e.content
	s := eventScanner{v: v, ok: true}
	e.eventID = s.str(`{"event_id":`)
	c.org = s.str(`,"org":`)
	c.callKey = s.str(`,"call_key":`)
	e.revision = int(s.int(`,"revision":`))
	c.id = s.nullableStr(`,"call_id":`)
	c.source = s.str(`,"source_number":`)
	c.dest = s.str(`,"destination_number":`)
	c.callType = s.str(`,"call_type":`)
	c.status = s.str(`,"call_status":`)
	c.creation = s.time(`,"creation_time":`)
	if s.nullableTime(`,"start_time":`, &e.start) {
		c.start = &e.start
	}
	if s.nullableTime(`,"end_time":`, &e.end) {
		c.end = &e.end
	}
	c.duration = s.int(`,"call_duration_seconds":`)
	c.endReason = s.str(`,"end_reason":`)
	return s.ok && bytes.HasPrefix(s.v, []byte(`,"observed_at":`))
}

// eventScanner walks an event's fields in order; any surprise clears ok
// and every later read returns a zero value.
type eventScanner struct {
	v  []byte
	ok bool
}

func (s *eventScanner) field(name string) bool {
	if !s.ok {
		return false
	}
	if s.v, s.ok = bytes.CutPrefix(s.v, []byte(name)); !s.ok {
		return false
	}
	return true
}

// str reads a string without escapes; the result is a slice of the value.
func (s *eventScanner) str(name string) []byte {
	if !s.field(name) || len(s.v) == 0 || s.v[0] != '"' {
		s.ok = false
		return nil
	}
	for i, c := range s.v[1:] {
		switch c {
		case '"':
			out := s.v[1 : i+1 : i+1]
			s.v = s.v[i+2:]
			return out
		case '\\':
			s.ok = false
			return nil
		}
	}
	s.ok = false
	return nil
}

func (s *eventScanner) isNull() bool {
	if s.ok && bytes.HasPrefix(s.v, []byte("null")) {
		s.v = s.v[4:]
		return true
	}
	return false
}

func (s *eventScanner) nullableStr(name string) []byte {
	if !s.field(name) || s.isNull() {
		return nil
	}
	return s.str("")
}

func (s *eventScanner) int(name string) int64 {
	if !s.field(name) {
		return 0
	}
	i := bytes.IndexByte(s.v, ',')
	if i <= 0 {
		s.ok = false
		return 0
	}
	n, err := strconv.ParseInt(string(s.v[:i]), 10, 64)
	if err != nil {
		s.ok = false
		return 0
	}
	s.v = s.v[i:]
	return n
}

func (s *eventScanner) time(name string) time.Time {
	text := s.str(name)
	if !s.ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, string(text))
	if err != nil {
		s.ok = false
	}
	return t
}

// nullableTime reads a time or null into t and reports whether it was a
// time.
func (s *eventScanner) nullableTime(name string, t *time.Time) bool {
	if !s.field(name) || s.isNull() {
		return false
	}
	*t = s.time("")
	return s.ok
}

// decodeEntry is scanEvent for any JSON encoding of an event: the slow
// path, for values the scanner gives up on.
func decodeEntry(v []byte, out *topicEntry) error {
	var e schemas.CallEvent
	if err := json.Unmarshal(v, &e); err != nil {
		return err
	}
	if e.Org == "" {
		return errors.New("no org")
	}
	var id []byte
	if e.CallID != nil {
		id = []byte(*e.CallID)
	}
	*out = topicEntry{eventID: []byte(e.EventID), revision: e.Revision, content: fields[[]byte]{
		org: []byte(e.Org), callKey: []byte(e.CallKey), id: id, source: []byte(e.SourceNumber), dest: []byte(e.DestinationNumber),
		callType: []byte(e.CallType), status: []byte(e.CallStatus), creation: e.CreationTime,
		duration: e.CallDurationSeconds, endReason: []byte(e.EndReason),
	}}
	if e.StartTime != nil {
		out.start = *e.StartTime
		out.content.start = &out.start
	}
	if e.EndTime != nil {
		out.end = *e.EndTime
		out.content.end = &out.end
	}
	return nil
}
