package schemas

import (
	"encoding/json"
	"time"
)

// Normalised call statuses and types.
const (
	StatusCompleted = "completed"
	StatusMissed    = "missed"
	StatusFailed    = "failed"

	CallInbound  = "inbound"
	CallOutbound = "outbound"
)

// CallEvent is the value of a record on the calls topic: one revision of one
// call log. It is validated by call_event.v1.json. Times are UTC.
type CallEvent struct {
	EventID             string          `json:"event_id"`
	Org                 string          `json:"org"`
	CallKey             string          `json:"call_key"`
	Revision            int             `json:"revision"`
	CallID              *string         `json:"call_id"`
	SourceNumber        string          `json:"source_number"`
	DestinationNumber   string          `json:"destination_number"`
	CallType            string          `json:"call_type"`
	CallStatus          string          `json:"call_status"`
	CreationTime        time.Time       `json:"creation_time"`
	StartTime           *time.Time      `json:"start_time"`
	EndTime             *time.Time      `json:"end_time"`
	CallDurationSeconds int64           `json:"call_duration_seconds"`
	EndReason           string          `json:"end_reason"`
	ObservedAt          time.Time       `json:"observed_at"`
	Raw                 json.RawMessage `json:"raw"`
}

// Type returns the event's ce_type: created for revision 1, updated after.
func (e *CallEvent) Type() string {
	if e.Revision <= 1 {
		return TypeCallCreated
	}
	return TypeCallUpdated
}
