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
// call stands (org, call key, revision), the content the gate compares
// (the content hash, recomputed from the value's normalised fields, which
// the value carries in full) and the creation time, for eviction.
type topicEntry struct {
	eventID  string
	revision int
	content  content
}

// scanEvent reads an event encoded in the schema's field order (as every
// event this package writes is) without a JSON decoder, which makes
// rebuilding the dedup memory several times faster. It reports false for
// anything unexpected, escapes included; the caller then decodes the value
// properly with decodeEntry.
func scanEvent(v []byte) (topicEntry, bool) {
	var e topicEntry
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
	c.start = s.nullableTime(`,"start_time":`)
	c.end = s.nullableTime(`,"end_time":`)
	c.duration = s.int(`,"call_duration_seconds":`)
	c.endReason = s.str(`,"end_reason":`)
	if !s.ok || !bytes.HasPrefix(s.v, []byte(`,"observed_at":`)) {
		return topicEntry{}, false
	}
	return e, true
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

// str reads a string without escapes.
func (s *eventScanner) str(name string) string {
	if !s.field(name) || len(s.v) == 0 || s.v[0] != '"' {
		s.ok = false
		return ""
	}
	for i, c := range s.v[1:] {
		switch c {
		case '"':
			out := string(s.v[1 : i+1])
			s.v = s.v[i+2:]
			return out
		case '\\':
			s.ok = false
			return ""
		}
	}
	s.ok = false
	return ""
}

func (s *eventScanner) isNull() bool {
	if s.ok && bytes.HasPrefix(s.v, []byte("null")) {
		s.v = s.v[4:]
		return true
	}
	return false
}

func (s *eventScanner) nullableStr(name string) string {
	if !s.field(name) || s.isNull() {
		return ""
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
	t, err := time.Parse(time.RFC3339Nano, text)
	if err != nil {
		s.ok = false
	}
	return t
}

func (s *eventScanner) nullableTime(name string) *time.Time {
	if !s.field(name) || s.isNull() {
		return nil
	}
	t := s.time("")
	if !s.ok {
		return nil
	}
	return &t
}

// decodeEntry is scanEvent for any JSON encoding of an event: the slow
// path, for values the scanner gives up on.
func decodeEntry(v []byte) (topicEntry, error) {
	var e schemas.CallEvent
	if err := json.Unmarshal(v, &e); err != nil {
		return topicEntry{}, err
	}
	if e.Org == "" {
		return topicEntry{}, errors.New("no org")
	}
	id := ""
	if e.CallID != nil {
		id = *e.CallID
	}
	return topicEntry{eventID: e.EventID, revision: e.Revision, content: content{
		org: e.Org, callKey: e.CallKey, id: id, source: e.SourceNumber, dest: e.DestinationNumber,
		callType: e.CallType, status: e.CallStatus, creation: e.CreationTime, start: e.StartTime, end: e.EndTime,
		duration: e.CallDurationSeconds, endReason: e.EndReason,
	}}, nil
}
