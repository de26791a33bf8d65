package kafkabus

import (
	"fmt"
	"maps"
	"testing"
	"unsafe"

	"github.com/segmentio/kafka-go"
)

// TestInternedUnmarshalMatchesDefault: sharing header values changes no
// message, repeated values are one string, and a header whose values keep
// changing stops being remembered.
func TestInternedUnmarshalMatchesDefault(t *testing.T) {
	in := newInterner()
	var firstType string
	for i := range 100 {
		km := kafka.Message{Value: []byte("v"), Headers: []kafka.Header{
			{Key: UUIDHeader, Value: []byte(fmt.Sprint("uuid-", i))},
			{Key: "ce_type", Value: []byte("callstream.call.created.v1")},
			{Key: "ce_id", Value: []byte(fmt.Sprint("id-", i))},
		}}
		want, _ := DefaultMarshaler{}.Unmarshal(km)
		got := unmarshalInterned(km, in)
		if got.UUID != want.UUID || !maps.Equal(got.Metadata, want.Metadata) {
			t.Fatalf("record %d: %s %v, want %s %v", i, got.UUID, got.Metadata, want.UUID, want.Metadata)
		}
		if i == 0 {
			firstType = got.Metadata["ce_type"]
		} else if unsafe.StringData(got.Metadata["ce_type"]) != unsafe.StringData(firstType) {
			t.Fatalf("record %d: ce_type is a copy, want the shared string", i)
		}
	}
	if set := in.values["ce_id"]; !set.full || set.m != nil {
		t.Fatalf("ce_id took 100 values and is still remembered (%d)", len(set.m))
	}
}
