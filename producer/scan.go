package producer

import (
	"bytes"
	"strconv"
	"time"
)

// eventIdentity is what a restore needs of an event on the topic.
type eventIdentity struct {
	EventID      string    `json:"event_id"`
	Org          string    `json:"org"`
	CallKey      string    `json:"call_key"`
	Revision     int       `json:"revision"`
	CreationTime time.Time `json:"creation_time"`
}

// scanEvent reads the identity of an event encoded in the schema's field
// order (as every event this package writes is) without a JSON decoder,
// which makes rebuilding the dedup memory several times faster. It reports
// false for anything unexpected, escapes included; the caller then decodes
// the value properly.
func scanEvent(v []byte) (eventIdentity, bool) {
	var e eventIdentity
	var ok bool
	if v, ok = bytes.CutPrefix(v, []byte(`{"event_id":"`)); !ok {
		return e, false
	}
	if e.EventID, v, ok = scanString(v); !ok {
		return e, false
	}
	if v, ok = bytes.CutPrefix(v, []byte(`,"org":"`)); !ok {
		return e, false
	}
	if e.Org, v, ok = scanString(v); !ok {
		return e, false
	}
	if v, ok = bytes.CutPrefix(v, []byte(`,"call_key":"`)); !ok {
		return e, false
	}
	if e.CallKey, v, ok = scanString(v); !ok {
		return e, false
	}
	if v, ok = bytes.CutPrefix(v, []byte(`,"revision":`)); !ok {
		return e, false
	}
	i := bytes.IndexByte(v, ',')
	if i <= 0 {
		return e, false
	}
	rev, err := strconv.Atoi(string(v[:i]))
	if err != nil {
		return e, false
	}
	e.Revision = rev
	const marker = `,"creation_time":"`
	j := bytes.Index(v, []byte(marker))
	if j < 0 {
		return e, false
	}
	ts, _, ok := scanString(v[j+len(marker):])
	if !ok {
		return e, false
	}
	if e.CreationTime, err = time.Parse(time.RFC3339Nano, ts); err != nil {
		return e, false
	}
	return e, true
}

// scanString returns the text up to the closing quote and what follows it;
// it gives up on escapes.
func scanString(v []byte) (string, []byte, bool) {
	for i, c := range v {
		switch c {
		case '"':
			return string(v[:i]), v[i+1:], true
		case '\\':
			return "", nil, false
		}
	}
	return "", nil, false
}
