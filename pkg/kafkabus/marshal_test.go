package kafkabus

import (
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/callstream/callstream/schemas"
	"github.com/segmentio/kafka-go"
)

func TestDefaultMarshalerRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		md      message.Metadata
		wantKey []byte
	}{
		{"key and cloudevents headers", message.Metadata{schemas.KeyMetadata: "call-1", "ce_id": "e1", "ce_type": "callstream.call.created.v1", "content-type": "application/json"}, []byte("call-1")},
		{"no key", message.Metadata{"ce_id": "e2"}, nil},
		{"empty key is a key", message.Metadata{schemas.KeyMetadata: ""}, []byte{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := message.NewMessage("uuid-1", []byte(`{"a":1}`))
			msg.Metadata = tt.md
			rec, err := DefaultMarshaler{}.Marshal("calls", msg)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Topic != "calls" || string(rec.Value) != `{"a":1}` {
				t.Fatalf("record = %+v", rec)
			}
			if (rec.Key == nil) != (tt.wantKey == nil) || string(rec.Key) != string(tt.wantKey) {
				t.Fatalf("key = %q (nil %v), want %q (nil %v)", rec.Key, rec.Key == nil, tt.wantKey, tt.wantKey == nil)
			}
			headers := map[string]string{}
			for _, h := range rec.Headers {
				if _, dup := headers[h.Key]; dup {
					t.Fatalf("duplicate header %s", h.Key)
				}
				headers[h.Key] = string(h.Value)
			}
			if _, ok := headers[schemas.KeyMetadata]; ok {
				t.Fatalf("key metadata also written as a header: %v", headers)
			}
			if headers[UUIDHeader] != "uuid-1" {
				t.Fatalf("uuid header = %q", headers[UUIDHeader])
			}
			for k, v := range tt.md {
				if k != schemas.KeyMetadata && headers[k] != v {
					t.Fatalf("header %s = %q, want %q", k, headers[k], v)
				}
			}
			if len(headers) != len(tt.md)+1-boolInt(tt.wantKey != nil) {
				t.Fatalf("headers %v: want exactly the non-key metadata plus the uuid", headers)
			}

			rec.Partition, rec.Offset, rec.Time = 3, 42, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
			back, err := DefaultMarshaler{}.Unmarshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			setDeliveryMetadata(back, rec)
			if back.UUID != "uuid-1" || string(back.Payload) != `{"a":1}` {
				t.Fatalf("unmarshalled %s %q", back.UUID, back.Payload)
			}
			for k, v := range tt.md {
				if back.Metadata.Get(k) != v {
					t.Fatalf("metadata %s = %q, want %q", k, back.Metadata.Get(k), v)
				}
			}
			want := map[string]string{schemas.TopicMetadata: "calls", schemas.PartitionMetadata: "3", schemas.OffsetMetadata: "42", schemas.TimestampMetadata: "2026-01-02T03:04:05.000000006Z"}
			for k, v := range want {
				if back.Metadata.Get(k) != v {
					t.Fatalf("delivery metadata %s = %q, want %q", k, back.Metadata.Get(k), v)
				}
			}
			if _, ok := back.Metadata[UUIDHeader]; ok {
				t.Fatal("uuid header leaked into metadata")
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestMurmur2MatchesJavaClient pins the partitioner to the Java client's
// murmur2 (values from Kafka's UtilsTest.testMurmur2): the partition of a
// key is (murmur2(key) & 0x7fffffff) % partitions.
func TestMurmur2MatchesJavaClient(t *testing.T) {
	javaHashes := map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
	}
	const n = 1000
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	b := &kafka.Murmur2Balancer{}
	for key, h := range javaHashes {
		want := int((uint32(h) & 0x7fffffff) % n)
		if got := b.Balance(kafka.Message{Key: []byte(key)}, parts...); got != want {
			t.Errorf("key %q: partition %d, want %d (Java murmur2 %d)", key, got, want, h)
		}
	}
}

// TestMarshalFencedAt: schemas.FencedAtMetadata becomes the record
// timestamp, not a header; a malformed one is an error naming it, not a
// record stamped at the epoch (which a fenced topic would refuse, or an
// unfenced one would store with a wrong time).
func TestMarshalFencedAt(t *testing.T) {
	tests := []struct {
		name, value string
		want        time.Time
		wantErr     bool
	}{
		{"unix milliseconds", "1796239000123", time.UnixMilli(1796239000123), false},
		{"not a number", "yesterday", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := message.NewMessage("uuid-1", []byte(`{}`))
			msg.Metadata.Set(schemas.FencedAtMetadata, tt.value)
			rec, err := DefaultMarshaler{}.Marshal("calls", msg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Marshal: err = %v, want an error: %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), schemas.FencedAtMetadata) {
					t.Fatalf("error %q does not name %s", err, schemas.FencedAtMetadata)
				}
				return
			}
			if !rec.Time.Equal(tt.want) {
				t.Fatalf("record time = %s, want %s", rec.Time, tt.want)
			}
			for _, h := range rec.Headers {
				if h.Key == schemas.FencedAtMetadata {
					t.Fatalf("%s also written as a header", h.Key)
				}
			}
		})
	}
}

// TestMarshalValuesShareNothing: the key and the header values of a record
// are cut from one buffer; appending to one must not change the next.
func TestMarshalValuesShareNothing(t *testing.T) {
	msg := message.NewMessage("uuid-1", []byte(`{}`))
	msg.Metadata = message.Metadata{schemas.KeyMetadata: "call-1", "ce_id": "e1", "ce_type": "t", "ce_source": "s"}
	rec, err := DefaultMarshaler{}.Marshal("calls", msg)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(rec.Key, "XXXX"...)
	for _, h := range rec.Headers {
		_ = append(h.Value, "XXXX"...)
	}
	if string(rec.Key) != "call-1" {
		t.Errorf("key = %q after appending to the headers, want call-1", rec.Key)
	}
	want := map[string]string{UUIDHeader: "uuid-1", "ce_id": "e1", "ce_type": "t", "ce_source": "s"}
	for _, h := range rec.Headers {
		if string(h.Value) != want[h.Key] {
			t.Errorf("header %s = %q after appending to the others, want %q", h.Key, h.Value, want[h.Key])
		}
	}
}
