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
	return newMessage(e, schemas.Source(e.Org)), nil
}

// newMessage is NewMessage for events whose raw record came from a decoded
// page, hence is valid JSON already.
// source is schemas.Source(e.Org), computed once per batch.
func newMessage(e *schemas.CallEvent, source string) *message.Message {
	payload := appendEvent(make([]byte, 0, 512+len(e.Raw)), e)
	msg := message.NewMessage(e.EventID, payload)
	msg.Metadata = message.Metadata{
		schemas.KeyMetadata:       e.CallKey,
		schemas.HeaderSpecVersion: schemas.SpecVersion,
		schemas.HeaderID:          e.EventID,
		schemas.HeaderSource:      source,
		schemas.HeaderType:        e.Type(),
		schemas.HeaderTime:        e.ObservedAt.Format(time.RFC3339Nano),
		schemas.HeaderSubject:     e.CallKey,
		schemas.HeaderContentType: schemas.JSONContentType,
	}
	return msg
}
