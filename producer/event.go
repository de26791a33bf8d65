package producer

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

// NewEvent builds the event for one revision of a record; its event_id is
// EventID of org, call key, revision and content hash.
func NewEvent(org string, r *unpod.Record, id Identity, revision int, observedAt time.Time) schemas.CallEvent {
	var callID *string
	if r.ID != "" {
		s := r.ID
		callID = &s
	}
	return schemas.CallEvent{
		EventID:             EventID(org, id.CallKey, revision, id.ContentHash).String(),
		Org:                 org,
		CallKey:             id.CallKey,
		Revision:            revision,
		CallID:              callID,
		SourceNumber:        r.SourceNumber,
		DestinationNumber:   r.DestinationNumber,
		CallType:            r.CallType,
		CallStatus:          r.CallStatus,
		CreationTime:        r.CreationTime.UTC(),
		StartTime:           utcPtr(r.StartTime),
		EndTime:             utcPtr(r.EndTime),
		CallDurationSeconds: r.DurationSeconds,
		EndReason:           r.EndReason,
		ObservedAt:          observedAt.UTC(),
		Raw:                 r.Raw,
	}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil || t.Location() == time.UTC {
		return t // records are never modified, so sharing is safe
	}
	u := t.UTC()
	return &u
}

// NewMessage encodes an event as a watermill message in the CloudEvents
// Kafka binding's binary mode: attributes as ce_* metadata (headers), the
// call key as the record key, the JSON event as the payload.
func NewMessage(e *schemas.CallEvent) (*message.Message, error) {
	if len(e.Raw) > 0 && !json.Valid(e.Raw) {
		return nil, fmt.Errorf("producer: event %s of call %s: raw record is not valid JSON", e.EventID, e.CallKey)
	}
	return newMessage(e, schemas.Source(e.Org), e.ObservedAt.Format(time.RFC3339Nano), nil), nil
}

// newMessage is NewMessage for events whose raw record came from a decoded
// page, hence is valid JSON already. Its arguments are what a batch of
// events shares, computed once per batch: source is schemas.Source(e.Org),
// at is e.ObservedAt in RFC 3339, and the payload is appended to *buf (nil
// for a buffer of its own), so a batch allocates its payloads at once.
func newMessage(e *schemas.CallEvent, source, at string, buf *[]byte) *message.Message {
	var b []byte
	if buf == nil {
		b = appendEvent(make([]byte, 0, 512+len(e.Raw)), e)
	} else {
		start := len(*buf)
		*buf = appendEvent(*buf, e)
		b = (*buf)[start:len(*buf):len(*buf)] // capped: an append cannot reach the next payload
	}
	msg := message.NewMessage(e.EventID, b)
	// Filled in place: the map NewMessage made holds eight entries without
	// growing.
	md := msg.Metadata
	md[schemas.KeyMetadata] = e.CallKey
	md[schemas.HeaderSpecVersion] = schemas.SpecVersion
	md[schemas.HeaderID] = e.EventID
	md[schemas.HeaderSource] = source
	md[schemas.HeaderType] = e.Type()
	md[schemas.HeaderTime] = at
	md[schemas.HeaderSubject] = e.CallKey
	md[schemas.HeaderContentType] = schemas.JSONContentType
	return msg
}
