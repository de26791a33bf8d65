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
	headers := make([]kafka.Header, 0, len(msg.Metadata)+1)
	headers = append(headers, kafka.Header{Key: UUIDHeader, Value: []byte(msg.UUID)})
	var key []byte
	var at time.Time
	for k, v := range msg.Metadata {
		if k == schemas.KeyMetadata {
			key = []byte(v)
			continue
		}
		if k == schemas.FencedAtMetadata {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return kafka.Message{}, fmt.Errorf("kafkabus: marshal for topic %s: metadata %s = %q: want Unix milliseconds", topic, k, v)
			}
			at = time.UnixMilli(ms)
			continue
		}
		if k == UUIDHeader {
			continue
		}
		headers = append(headers, kafka.Header{Key: k, Value: []byte(v)})
	}
	return kafka.Message{Topic: topic, Key: key, Value: msg.Payload, Headers: headers, Time: at}, nil
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
// headers of the same names: the broker's word is the truth. With an
// interner, the timestamp's text is shared with the record before when
// both have the same timestamp.
func setDeliveryMetadata(msg *message.Message, km kafka.Message, in *interner) {
	schemas.SetPosition(msg.Metadata, schemas.Position{Topic: km.Topic, Partition: int32(km.Partition), Offset: km.Offset})
	if in != nil {
		msg.Metadata[schemas.TimestampMetadata] = in.timestamp(km.Time)
	} else {
		msg.Metadata[schemas.TimestampMetadata] = formatTimestamp(km.Time)
	}
	if km.Key != nil {
		msg.Metadata[schemas.KeyMetadata] = string(km.Key)
	}
}

func formatTimestamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// interner keeps one copy of the values of headers that take few distinct
// values (ce_type, ce_source, content-type), so a busy subscription does not
// allocate them again for every record (kafka-go already gives the keys as
// strings). A key whose values keep changing (ce_id, ce_time) stops being
// remembered after internLimit distinct values. It also keeps the last
// record timestamp's text: the producer stamps a whole batch with one
// timestamp (schemas.FencedAtMetadata). One goroutine uses it at a time.
type interner struct {
	values map[string]*internSet
	// byIndex is the set of the key last seen at each header index: one
	// producer writes its headers in the same order every time, so the
	// key's set is found by a string comparison, not a map lookup.
	byIndex []*internSet

	lastTime time.Time
	lastText string
}

type internSet struct {
	key  string
	m    map[string]string
	full bool
}

const (
	internLimit = 32
	// indexLimit bounds byIndex; headers after it are looked up by key.
	indexLimit = 16
)

func newInterner() *interner { return &interner{values: map[string]*internSet{}} }

// set returns the set of key, the name of header number i.
func (in *interner) set(i int, key string) *internSet {
	if i < len(in.byIndex) {
		if set := in.byIndex[i]; set != nil && set.key == key {
			return set
		}
	}
	set := in.values[key]
	if set == nil {
		set = &internSet{key: key, m: map[string]string{}}
		in.values[key] = set
	}
	if i < indexLimit {
		for len(in.byIndex) <= i {
			in.byIndex = append(in.byIndex, nil)
		}
		in.byIndex[i] = set
	}
	return set
}

// value returns b as a string, the copy kept for key when there is one;
// i is the header's index in its record.
func (in *interner) value(i int, key string, b []byte) string {
	set := in.set(i, key)
	if set.full {
		return string(b)
	}
	if s, ok := set.m[string(b)]; ok { // the lookup does not allocate
		return s
	}
	s := string(b)
	if len(set.m) >= internLimit {
		set.full, set.m = true, nil
	} else {
		set.m[s] = s
	}
	return s
}

// timestamp is formatTimestamp(t), the text of the last call again when t
// is the same instant.
func (in *interner) timestamp(t time.Time) string {
	if in.lastText == "" || !t.Equal(in.lastTime) {
		in.lastTime, in.lastText = t, formatTimestamp(t)
	}
	return in.lastText
}

// unmarshalInterned is DefaultMarshaler.Unmarshal with the values of in.
func unmarshalInterned(km kafka.Message, in *interner) *message.Message {
	var uuid string
	for _, h := range km.Headers {
		if h.Key == UUIDHeader {
			uuid = string(h.Value)
			break
		}
	}
	msg := message.NewMessage(uuid, km.Value)
	msg.Metadata = make(message.Metadata, len(km.Headers)+6)
	for i, h := range km.Headers {
		if h.Key != UUIDHeader {
			msg.Metadata[h.Key] = in.value(i, h.Key, h.Value)
		}
	}
	return msg
}
