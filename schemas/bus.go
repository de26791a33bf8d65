package schemas

import (
	"errors"
	"strconv"
)

// Message metadata every bus understands. A bus (Kafka, the embedded SQLite
// log) translates these to and from its own record format, so the producer
// and the consumers name no bus: the producer sets KeyMetadata, and every
// delivered message carries its Position under the position keys.
const (
	// KeyMetadata is the record key: set it before Publish to keep
	// messages with the same key in one partition, in order (the producer
	// sets the event's call_key). Delivered messages carry it back.
	KeyMetadata = "partition_key"

	// FencedAtMetadata is, in Unix milliseconds, the moment the publisher
	// last confirmed that it may publish the message (the producer: when
	// the coordinator last confirmed its ownership of the org). Kafka writes
	// it as the record timestamp rather than as a header, so a topic with
	// message.timestamp.before.max.ms refuses a message that arrives too
	// long after its confirmation: the batch of an owner paused past its
	// ownership. Buses without such a check ignore it.
	FencedAtMetadata = "bus_fenced_at"

	// TopicMetadata, PartitionMetadata and OffsetMetadata locate a
	// delivered message (see Position); numbers are in decimal.
	TopicMetadata     = "bus_topic"
	PartitionMetadata = "bus_partition"
	OffsetMetadata    = "bus_offset"
	// TimestampMetadata is when the bus stored the message, RFC 3339 with
	// nanoseconds, UTC.
	TimestampMetadata = "bus_timestamp"

	// UnmarshalErrorMetadata is set, with the error text, on a message whose
	// record the bus could not turn into a message as configured; the
	// message then holds the raw record, so the consumer's poison queue
	// deals with it instead of the bus dropping or blocking on it.
	UnmarshalErrorMetadata = "bus_unmarshal_error"
)

// Position is where a delivered message sits on the bus: its topic, its
// partition and its offset there. Offsets grow within a partition; a
// message delivered again has the same Position.
type Position struct {
	Topic     string
	Partition int32
	Offset    int64
}

// PositionOf reads the Position a bus set on a message's metadata (a
// message.Metadata is such a map). ok is false when the metadata holds no
// complete position, as on a bus that keeps none (watermill's GoChannel).
func PositionOf(md map[string]string) (p Position, ok bool) {
	ps, okP := md[PartitionMetadata]
	os, okO := md[OffsetMetadata]
	if !okP || !okO {
		return Position{}, false
	}
	part, err := strconv.ParseInt(ps, 10, 32)
	if err != nil || part < 0 {
		return Position{}, false
	}
	off, err := strconv.ParseInt(os, 10, 64)
	if err != nil || off < 0 {
		return Position{}, false
	}
	return Position{Topic: md[TopicMetadata], Partition: int32(part), Offset: off}, true
}

// SetPosition records p in a message's metadata, for a bus delivering it.
func SetPosition(md map[string]string, p Position) {
	md[TopicMetadata] = p.Topic
	md[PartitionMetadata] = strconv.FormatInt(int64(p.Partition), 10)
	md[OffsetMetadata] = strconv.FormatInt(p.Offset, 10)
}

// ErrTooLarge is wrapped by a bus's Publish error when a message is larger
// than the topic accepts. Publishing it again cannot succeed: the caller
// dead-letters it, or records it, and goes on.
var ErrTooLarge = errors.New("message too large for the topic")

// Metadata keys of a message on the dead-letter topic (callstream.dlq.v1).
// The original message's payload and metadata are kept as they were; these
// say why it is there and where it came from.
const (
	DLQReasonMetadata    = "callstream_dlq_reason"    // why it was poisoned
	DLQHandlerMetadata   = "callstream_dlq_handler"   // the plug-in (or "producer") that gave up
	DLQEndpointMetadata  = "callstream_dlq_endpoint"  // for webhooks: the endpoint that failed it
	DLQTopicMetadata     = "callstream_dlq_topic"     // the topic it came from
	DLQPartitionMetadata = "callstream_dlq_partition" // its partition there
	DLQOffsetMetadata    = "callstream_dlq_offset"    // its offset there
	DLQTimeMetadata      = "callstream_dlq_time"      // when it was poisoned, RFC 3339
	DLQOrgMetadata       = "callstream_dlq_org"       // the organization, when known
)

// DLQMetadataPrefix starts every DLQ metadata key: replay drops them all.
const DLQMetadataPrefix = "callstream_dlq_"

// HandlerProducer is the DLQHandlerMetadata of records the producer could
// not publish as events (an unknown status, an undecodable or oversized
// record); their payload is the raw record as the API sent it.
const HandlerProducer = "producer"

// Targeted replay. `callstream dlq replay` puts a dead-lettered message back
// on the retry topic of the one that failed it (RetryTopic, named from its
// DLQHandlerMetadata), never on the shared calls topic, so no other
// consumer sees it twice. A consumer reads its retry topic beside the calls
// topic.
const (
	// ReplayEndpointMetadata names, on a replayed message, the webhook
	// endpoint that failed it: only that endpoint is sent it again.
	ReplayEndpointMetadata = "callstream_replay_endpoint"
)

// RetryTopic is the retry topic of a plug-in (or of the producer, handler
// HandlerProducer): TopicName(prefix, "retry.<handler>.v1").
func RetryTopic(prefix, handler string) string { return TopicName(prefix, "retry."+handler+".v1") }
