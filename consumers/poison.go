package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/schemas"
)

// maxReasonLen bounds the DLQ reason header; a panic's or a driver's message
// can be long.
const maxReasonLen = 2000

// deadLetter publishes a copy of every poisoned message of a batch to the
// DLQ topic, with the reason and origin in metadata. A publish that fails is
// retried with backoff (the DLQ is on the same bus the batch came from: it
// comes back when the bus does); at shutdown the messages not yet in the
// DLQ become abandoned and are delivered again next time. A message too
// large for the DLQ cannot ever be published: it is recorded (offset, size,
// reason) in the callstream_consumer_undeliverable_total metric and the
// plug-in's state, logged, and acknowledged, so the partition moves on.
func (l *lane) deadLetter(b *delivery.Batch, outcomes []outcome) {
	for i, o := range outcomes {
		if o.kind != poisoned {
			continue
		}
		dead := l.deadCopy(b.Message(i), o.reason)
		wait := l.rt.cfg.newBackoff()
		for {
			err := l.rt.deps.Publisher.Publish(l.rt.deps.Topics.DLQ, dead)
			if err == nil {
				l.log.Warn("message sent to the DLQ", "message_uuid", dead.UUID,
					"topic", dead.Metadata.Get(schemas.DLQTopicMetadata),
					"partition", dead.Metadata.Get(schemas.DLQPartitionMetadata),
					"offset", dead.Metadata.Get(schemas.DLQOffsetMetadata),
					"reason", dead.Metadata.Get(schemas.DLQReasonMetadata))
				break
			}
			if errors.Is(err, schemas.ErrTooLarge) {
				l.undeliverable(dead, err)
				break
			}
			l.log.Error("publishing to the DLQ failed; retrying", "topic", l.rt.deps.Topics.DLQ, "err", err)
			if !sleep(l.intake, wait.NextBackOff()) {
				outcomes[i] = outcome{kind: abandoned}
				break
			}
		}
	}
}

// deadCopy adds the DLQ metadata to msg, a copy of the poisoned message
// (payload and metadata, so the record key stays; see Batch.Message), and
// returns it.
func (l *lane) deadCopy(msg *message.Message, reason error) *message.Message {
	text := reason.Error()
	if len(text) > maxReasonLen {
		text = text[:maxReasonLen] + "..."
	}
	pos, ok := schemas.PositionOf(msg.Metadata)
	topic := pos.Topic
	if topic == "" {
		topic = l.rt.deps.Topics.Calls
	}
	msg.Metadata.Set(schemas.DLQReasonMetadata, text)
	msg.Metadata.Set(schemas.DLQHandlerMetadata, l.name)
	msg.Metadata.Set(schemas.DLQTopicMetadata, topic)
	if ok {
		msg.Metadata.Set(schemas.DLQPartitionMetadata, fmt.Sprint(pos.Partition))
		msg.Metadata.Set(schemas.DLQOffsetMetadata, fmt.Sprint(pos.Offset))
	}
	msg.Metadata.Set(schemas.DLQTimeMetadata, time.Now().UTC().Format(time.RFC3339Nano))
	return msg
}

// undeliverableKey is the state key (in the plug-in's StateStore) of the
// messages that could not be dead-lettered.
const undeliverableKey = "runtime.undeliverable"

// maxUndeliverable bounds that record: the newest entries are kept.
const maxUndeliverable = 1000

// Undeliverable is one message that could be neither handled nor
// dead-lettered, as recorded in the plug-in's state.
type Undeliverable struct {
	Topic     string    `json:"topic"`
	Partition string    `json:"partition"`
	Offset    string    `json:"offset"`
	UUID      string    `json:"uuid"`
	Bytes     int       `json:"bytes"`
	Reason    string    `json:"reason"`
	Error     string    `json:"error"`
	At        time.Time `json:"at"`
}

func (l *lane) undeliverable(dead *message.Message, err error) {
	u := Undeliverable{
		Topic: dead.Metadata.Get(schemas.DLQTopicMetadata), Partition: dead.Metadata.Get(schemas.DLQPartitionMetadata),
		Offset: dead.Metadata.Get(schemas.DLQOffsetMetadata), UUID: dead.UUID, Bytes: len(dead.Payload),
		Reason: dead.Metadata.Get(schemas.DLQReasonMetadata), Error: err.Error(), At: time.Now().UTC(),
	}
	l.m.undeliverable.Inc()
	l.log.Error("message cannot be dead-lettered (too large for the DLQ); recorded in the plug-in's state and skipped",
		"topic", u.Topic, "partition", u.Partition, "offset", u.Offset, "bytes", u.Bytes, "reason", u.Reason, "err", err)
	if l.state == nil {
		return
	}
	l.undeliverableMu.Lock()
	defer l.undeliverableMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list, lerr := Undeliverables(ctx, l.state)
	if lerr != nil {
		l.log.Error("reading the record of undeliverable messages failed; starting it afresh", "err", lerr)
	}
	list = append(list, u)
	if len(list) > maxUndeliverable {
		list = list[len(list)-maxUndeliverable:]
	}
	data, _ := json.Marshal(list) // plain strings and numbers always marshal
	if err := l.state.Save(ctx, undeliverableKey, data); err != nil {
		l.log.Error("saving the record of undeliverable messages failed", "err", err)
	}
}

// Undeliverables returns the messages a plug-in's lane could neither handle
// nor dead-letter, oldest first, from the plug-in's state.
func Undeliverables(ctx context.Context, st StateStore) ([]Undeliverable, error) {
	data, err := st.Load(ctx, undeliverableKey)
	if err != nil || len(data) == 0 {
		return nil, err
	}
	var list []Undeliverable
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("consumers: decode %s: %w", undeliverableKey, err)
	}
	return list, nil
}
