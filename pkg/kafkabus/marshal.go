package kafkabus

import (
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"

	"github.com/callstream/callstream/schemas"
)

// Metadata keys of delivered messages are schemas.KeyMetadata and the
// position keys (see schemas.Position); on publish, schemas.KeyMetadata
// becomes the record key.
// A record the configured Unmarshaler rejects is delivered as
// DefaultMarshaler reads it, with schemas.UnmarshalErrorMetadata set.
const (
	// UUIDHeader carries the watermill message UUID. The name matches
	// watermill-kafka, so either implementation can read the other's records.
	UUIDHeader = "_watermill_message_uuid"
)

// Marshaler turns a watermill message into a Kafka record.
type Marshaler interface {
	Marshal(topic string, msg *message.Message) (kafka.Message, error)
}

// Unmarshaler turns a Kafka record into a watermill message. The Subscriber
// adds the delivery metadata (topic, partition, offset, timestamp, key)
// afterwards, so an Unmarshaler need not.
type Unmarshaler interface {
	Unmarshal(kafka.Message) (*message.Message, error)
}

// DefaultMarshaler maps a message's metadata to Kafka headers one to one,
// except schemas.KeyMetadata, which becomes the record key, and
// schemas.FencedAtMetadata, which becomes the record timestamp (neither is
// a header). A message
// without a key gets a nil key, which the Publisher's balancer spreads
// over the partitions.
type DefaultMarshaler struct{}

// Marshal implements Marshaler.
func (DefaultMarshaler) Marshal(topic string, msg *message.Message) (kafka.Message, error) {
	if msg == nil {
		return kafka.Message{}, fmt.Errorf("kafkabus: marshal for topic %s: nil message", topic)
	}
	// The key and every header value are copied into one buffer: one
	// allocation a record instead of one a header, which is a third of what
	// the producer allocates per event.
	n := len(msg.UUID)
	for _, v := range msg.Metadata {
		n += len(v)
	}
	buf := make([]byte, 0, n)
	headers := make([]kafka.Header, 0, len(msg.Metadata)+1)
	headers = append(headers, kafka.Header{Key: UUIDHeader, Value: carve(&buf, msg.UUID)})
	var key []byte
	var at time.Time
	for k, v := range msg.Metadata {
		switch k {
		case schemas.KeyMetadata:
			key = carve(&buf, v)
		case schemas.FencedAtMetadata:
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return kafka.Message{}, fmt.Errorf("kafkabus: marshal for topic %s: metadata %s = %q: want Unix milliseconds", topic, k, v)
			}
			at = time.UnixMilli(ms)
		case UUIDHeader:
		default:
			headers = append(headers, kafka.Header{Key: k, Value: carve(&buf, v)})
		}
	}
	return kafka.Message{Topic: topic, Key: key, Value: msg.Payload, Headers: headers, Time: at}, nil
}

// carve appends s to *buf and returns its bytes there, capped so that an
// append to them cannot reach the next value.
func carve(buf *[]byte, s string) []byte {
	start := len(*buf)
	*buf = append(*buf, s...)
	return (*buf)[start:len(*buf):len(*buf)]
}

// Unmarshal implements Unmarshaler.
func (DefaultMarshaler) Unmarshal(km kafka.Message) (*message.Message, error) {
	var uuid string
	for _, h := range km.Headers {
		if h.Key == UUIDHeader {
			uuid = string(h.Value)
			break
		}
	}
	msg := message.NewMessage(uuid, km.Value)
	// Room for the headers and the delivery metadata, so the map never grows.
	msg.Metadata = make(message.Metadata, len(km.Headers)+6)
	for _, h := range km.Headers {
		if h.Key != UUIDHeader {
			msg.Metadata[h.Key] = string(h.Value)
		}
	}
	return msg, nil
}

// setDeliveryMetadata records where a message came from. It overwrites
// headers of the same names: the broker's word is the truth.
func setDeliveryMetadata(msg *message.Message, km kafka.Message) {
	schemas.SetPosition(msg.Metadata, schemas.Position{Topic: km.Topic, Partition: int32(km.Partition), Offset: km.Offset})
	msg.Metadata[schemas.TimestampMetadata] = formatTimestamp(km.Time)
	if km.Key != nil {
		msg.Metadata[schemas.KeyMetadata] = string(km.Key)
	}
}

// isDeliveryMetadata reports whether setDeliveryMetadata sets key.
func isDeliveryMetadata(key string) bool {
	switch key {
	case schemas.TopicMetadata, schemas.PartitionMetadata, schemas.OffsetMetadata, schemas.TimestampMetadata, schemas.KeyMetadata:
		return true
	}
	return false
}

func formatTimestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
