package consumers

import (
	"errors"
	"fmt"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/schemas"
)

// Reasons a message cannot be decoded. They are permanent: such a message
// goes to the DLQ without retries and never reaches a plug-in, and its DLQ
// reason starts with the text of one of these.
var (
	ErrNotJSON        = schemas.ErrNotJSON
	ErrSchema         = schemas.ErrSchema
	ErrUnknownVersion = errors.New("unknown major version")
)

// decode turns record i of a batch into a Delivery: the ce_type header's
// major version must be v1, the payload JSON matching
// schemas/call_event.v1.json.
func (r *Runtime) decode(b *delivery.Batch, i int) (Delivery, error) {
	// A record without ce_type (a hand-made test message, an older
	// producer) is judged by its payload alone.
	if t := b.Metadata(i, schemas.HeaderType); t != "" {
		if mv := schemas.MajorVersion(t); mv != "v1" {
			return Delivery{}, fmt.Errorf("%w: ce_type %q has major version %q, this consumer knows v1", ErrUnknownVersion, t, mv)
		}
	}
	if bad := b.Metadata(i, schemas.UnmarshalErrorMetadata); bad != "" {
		return Delivery{}, fmt.Errorf("%w: record could not be unmarshalled: %s", ErrNotJSON, bad)
	}
	rec := b.Records[i]
	// In place: the event points into the payload, which no one writes to
	// once the bus delivered it, and which the Delivery keeps alive anyway.
	ev, err := r.validator.DecodeCallInPlace(rec.Payload)
	if err != nil {
		return Delivery{}, err // wraps ErrNotJSON or ErrSchema
	}
	return Delivery{Event: ev, Payload: rec.Payload, Position: rec.Position, HasPosition: rec.HasPosition, batch: b, index: i}, nil
}
