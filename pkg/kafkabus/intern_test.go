package kafkabus

import (
	"fmt"
	"maps"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/schemas"
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

// TestInternedDeliveryMatchesDefault: records whose headers come in
// another order, or with other keys at the same index, and whose
// timestamps repeat or change (in other time zones too), get the metadata
// the uninterned path gives them.
func TestInternedDeliveryMatchesDefault(t *testing.T) {
	at := time.Date(2026, 12, 3, 8, 0, 0, 123_000_000, time.UTC)
	h := func(k, v string) kafka.Header { return kafka.Header{Key: k, Value: []byte(v)} }
	recs := []kafka.Message{
		{Time: at, Headers: []kafka.Header{h("ce_type", "a"), h("ce_id", "1")}},
		{Time: at, Headers: []kafka.Header{h("ce_type", "a"), h("ce_id", "2")}},
		{Time: at.Add(time.Millisecond), Headers: []kafka.Header{h("ce_id", "3"), h("ce_type", "b")}},
		{Time: at.Add(time.Millisecond).In(time.FixedZone("IST", 19800)), Headers: []kafka.Header{h("content-type", "a"), h("ce_type", "a"), h("ce_id", "4")}},
		{Time: at, Headers: []kafka.Header{h(UUIDHeader, "u"), h("ce_type", "a")}},
		{Time: time.Time{}, Headers: nil},
		{Time: at, Headers: []kafka.Header{h("ce_type", "c"), h("ce_id", "5")}},
	}
	in := newInterner()
	for i, km := range recs {
		km.Topic, km.Partition, km.Offset = "calls", i%2, int64(i)
		want, _ := DefaultMarshaler{}.Unmarshal(km)
		setDeliveryMetadata(want, km, nil)
		got := unmarshalInterned(km, in)
		setDeliveryMetadata(got, km, in)
		if !maps.Equal(got.Metadata, want.Metadata) {
			t.Fatalf("record %d: %v, want %v", i, got.Metadata, want.Metadata)
		}
	}
}

// BenchmarkNewMessage is the cost of turning one record, with the headers
// the producer writes, into a delivered message: the part of a batch
// subscription's work per record that is not kafka-go's.
func BenchmarkNewMessage(b *testing.B) {
	sub := &subscription{s: &Subscriber{cfg: SubscriberConfig{Unmarshaler: DefaultMarshaler{}}}}
	in := newInterner()
	recs := make([]kafka.Message, 1000)
	for i := range recs {
		id := strconv.Itoa(100000 + i)
		recs[i] = kafka.Message{Topic: "callstream.calls.v1", Partition: i % 3, Offset: int64(1_000_000 + i),
			Key: []byte("c2b1c7e1d0a94b3e8f6a" + id), Value: []byte(`{"org":"acme"}`), Time: time.UnixMilli(1764000000000 + int64(i/500)), // a batch shares its timestamp (the producer's fencing stamp)
			Headers: []kafka.Header{
				{Key: UUIDHeader, Value: []byte("6f1c2d3e-4b5a-5c6d-8e7f-" + id + "000000")},
				{Key: schemas.HeaderSpecVersion, Value: []byte("1.0")},
				{Key: schemas.HeaderID, Value: []byte("6f1c2d3e-4b5a-5c6d-8e7f-" + id + "000000")},
				{Key: schemas.HeaderSource, Value: []byte("unpod://orgs/acme")},
				{Key: schemas.HeaderType, Value: []byte("callstream.call.created.v1")},
				{Key: schemas.HeaderTime, Value: []byte("2026-11-24T16:00:00." + id + "Z")},
				{Key: schemas.HeaderSubject, Value: []byte("c2b1c7e1d0a94b3e8f6a" + id)},
				{Key: schemas.HeaderContentType, Value: []byte("application/json")},
			}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		_ = sub.newMessage(recs[i%len(recs)], in, false)
	}
}
