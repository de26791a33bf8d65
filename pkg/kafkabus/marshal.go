package kafkabus

import (
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/segmentio/kafka-go"
)

// Metadata keys set on every delivered message. KeyMetadata also works the
// other way: on publish, its value becomes the record key.
const (
	// KeyMetadata holds the Kafka record key. Set it before Publish to choose
	// the partition (DESIGN.md: the event's call_key).
	KeyMetadata = "partition_key"
	// TopicMetadata holds the topic the message was read from.
	TopicMetadata = "kafka_topic"
	// PartitionMetadata holds the partition number, in decimal.
	PartitionMetadata = "kafka_partition"
	// OffsetMetadata holds the record offset, in decimal.
	OffsetMetadata = "kafka_offset"
	// TimestampMetadata holds the record timestamp in RFC 3339 with
	// nanoseconds, UTC.
	TimestampMetadata = "kafka_timestamp"

	// UnmarshalErrorMetadata is set, with the error text, on a message whose
	// record the configured Unmarshaler rejected; the message then holds the
	// raw record as DefaultMarshaler reads it, so a handler or poison queue
	// can deal with it instead of the subscription dropping or blocking on it.
	UnmarshalErrorMetadata = "kafkabus_unmarshal_error"

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
// except KeyMetadata, which becomes the record key (and no header). A message
// without KeyMetadata gets a nil key, which the Publisher's balancer spreads
// over the partitions.
type DefaultMarshaler struct{}

// Marshal implements Marshaler.
func (DefaultMarshaler) Marshal(topic string, msg *message.Message) (kafka.Message, error) {
	if msg == nil {
		return kafka.Message{}, fmt.Errorf("kafkabus: marshal for topic %s: nil message", topic)
	}
	headers := make([]kafka.Header, 0, len(msg.Metadata)+1)
	headers = append(headers, kafka.Header{Key: UUIDHeader, Value: []byte(msg.UUID)})
	var key []byte
	for k, v := range msg.Metadata {
		if k == KeyMetadata {
			key = []byte(v)
			continue
		}
		if k == UUIDHeader {
			continue
		}
		headers = append(headers, kafka.Header{Key: k, Value: []byte(v)})
	}
	return kafka.Message{Topic: topic, Key: key, Value: msg.Payload, Headers: headers}, nil
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
	msg.Metadata[TopicMetadata] = km.Topic
	msg.Metadata[PartitionMetadata] = strconv.Itoa(km.Partition)
	msg.Metadata[OffsetMetadata] = strconv.FormatInt(km.Offset, 10)
	msg.Metadata[TimestampMetadata] = km.Time.UTC().Format(time.RFC3339Nano)
	if km.Key != nil {
		msg.Metadata[KeyMetadata] = string(km.Key)
	}
}
