package consumers

import (
	"context"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/delivery"
	"github.com/callstream/callstream/schemas"
)

// Delivery is one decoded call event handed to a plug-in, with the message it
// came in (payload, metadata) and where that message sits on the bus.
type Delivery struct {
	Event schemas.CallEvent
	// Payload is the message's body as it came in: the event's JSON. No
	// one may write to it.
	Payload []byte
	// Position is the message's topic, partition and offset; HasPosition is
	// false on a bus that keeps none (watermill's GoChannel, in tests).
	// A redelivered message has the same Position.
	Position    schemas.Position
	HasPosition bool

	batch *delivery.Batch // the message's batch, for its metadata
	index int
}

// Metadata returns the value of key in the message's metadata (a header,
// or delivery metadata such as schemas.KeyMetadata), "" when unset. It is
// read from the bus's record on each call; the runtime's path makes no
// metadata map per message.
func (d Delivery) Metadata(key string) string {
	if d.batch == nil {
		return ""
	}
	return d.batch.Metadata(d.index, key)
}

// NewDelivery returns the Delivery of ev as it came in msg: its payload,
// metadata and position. For plug-in tests, and for callers that hold a
// watermill message.
func NewDelivery(ev schemas.CallEvent, msg *message.Message) Delivery {
	b := delivery.FromMessages([]*message.Message{msg})
	r := b.Records[0]
	return Delivery{Event: ev, Payload: r.Payload, Position: r.Position, HasPosition: r.HasPosition, batch: b}
}

// Plugin is one consumer. It must also implement Handler or BatchHandler.
type Plugin interface {
	// Name is short and stable ("storage"): it names the consumer group
	// (callstream-<name>), metrics and log lines.
	Name() string
}

// Handler processes one event. A nil return acknowledges it. An error is
// retried with backoff; an error wrapped by Permanent, or one that keeps
// failing, sends the message to the DLQ with the error as the reason.
// Handle may block (back-pressure); it must return when ctx is done.
type Handler interface {
	Handle(ctx context.Context, d Delivery) error
}

// BatchHandler processes events in batches, for sinks that write in
// transactions. The runtime collects concurrent deliveries into a batch
// bounded by BatchSize and BatchWait, and acknowledges each message only
// after HandleBatch returned for the batch holding it: offsets are committed
// only after the batch is durable. To fail only some items, return an
// *ItemErrors; any other error fails the whole batch. HandleBatch must not
// modify batch or its elements: a retry may hand over the same slice.
type BatchHandler interface {
	HandleBatch(ctx context.Context, batch []Delivery) error
}

// Runner is implemented by plug-ins with background work (timers, retry
// queues). The runtime calls Run before the first delivery and cancels its
// context on shutdown, after the router has stopped delivering.
type Runner interface {
	Run(ctx context.Context) error
}

// Closer is implemented by plug-ins that hold resources (databases, open
// files). The runtime calls Close once, last.
type Closer interface {
	Close() error
}

// Tuner is implemented by plug-ins that need other delivery settings than
// the defaults.
type Tuner interface {
	Tuning() Tuning
}

// Tuning says how a plug-in wants its events delivered. Zero fields take the
// runtime's defaults.
type Tuning struct {
	// MaxInFlight is how many unacknowledged messages the subscriber may hand
	// out at once (per subscription). A plug-in that holds messages until a
	// file is durable needs as many as a file may hold. The runtime raises
	// it to (Concurrency+2)·BatchSize: the batches being handled, one
	// waiting its turn and one filling.
	MaxInFlight int
	// BatchSize and BatchWait bound a batch: at most BatchSize messages,
	// or what arrived within BatchWait of the first.
	BatchSize int
	BatchWait time.Duration
	// Concurrency is how many batches the plug-in handles at once. 1 (the
	// default) hands a partition's messages over in order, one batch after
	// the other. More suits a sink whose HandleBatch waits for something
	// slow to become durable (the lake waits for its files): the next
	// batches are handed over meanwhile, and offsets are still committed
	// only up to the first batch not yet done.
	Concurrency int
}

// Deps is what the runtime gives every plug-in's constructor.
type Deps struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Publisher publishes to the bus (alerts topic, DLQ, a plug-in's own topics).
	Publisher message.Publisher
	// Topics are the full topic names, prefix applied.
	Topics Topics
	// State keeps the plug-in's small durable state across restarts: a file
	// under the state directory in embedded mode, a record in a compacted
	// topic in Kafka mode. Keys are scoped to the plug-in.
	State StateStore
}

// StateStore keeps small durable state (a few MB at most) by key.
type StateStore interface {
	// Load returns the value last saved under key, or nil and no error when
	// nothing was saved.
	Load(ctx context.Context, key string) ([]byte, error)
	// Save replaces the value under key durably before it returns.
	Save(ctx context.Context, key string, value []byte) error
}

// BatchSaver is a StateStore that saves several keys more cheaply than
// one Save each (files: one fsync of the directory; Kafka: one write).
// Both stores of the runtime are BatchSavers; SaveStates uses it when a
// store is one.
type BatchSaver interface {
	// SaveAll saves every entry durably before it returns. It is not
	// atomic: after an error or a crash each entry holds its old value or
	// its new one, whole.
	SaveAll(ctx context.Context, entries map[string][]byte) error
}

// Topics are the full names of the topics the runtime and plug-ins use.
type Topics struct {
	Prefix string
	Calls  string
	Alerts string
	DLQ    string
}

// Retry returns the retry topic of a plug-in: `callstream dlq replay` puts
// the messages the plug-in dead-lettered there, and the runtime reads it
// beside the calls topic, so a replay reaches that plug-in alone.
func (t Topics) Retry(plugin string) string { return schemas.RetryTopic(t.Prefix, plugin) }

// Outputs returns the topics the runtime and the plug-ins write to, which
// must exist before they start: the DLQ, the alerts topic and the retry
// topic of each plug-in.
func (t Topics) Outputs(plugins []string) []string {
	out := []string{t.DLQ, t.Alerts}
	for _, p := range plugins {
		out = append(out, t.Retry(p))
	}
	return out
}

// NewTopics derives the topic names from a prefix ("callstream." by default).
func NewTopics(prefix string) Topics {
	return Topics{
		Prefix: prefix,
		Calls:  schemas.TopicName(prefix, schemas.CallsTopic),
		Alerts: schemas.TopicName(prefix, schemas.AlertsTopic),
		DLQ:    schemas.TopicName(prefix, schemas.DLQTopic),
	}
}

// Factory builds a plug-in. The factory closes over the plug-in's config
// section, so adding a consumer touches no other consumer.
type Factory struct {
	Name string
	New  func(deps Deps) (Plugin, error)
}

// Flusher is implemented by plug-ins that hold acknowledgements back until
// a unit of work is durable (an open file). When shutdown begins, once no
// new message is being handed out, the runtime calls Flush concurrently
// with waiting for the in-flight deliveries, so they can finish now rather
// than when their unit would have closed on its own.
type Flusher interface {
	Flush()
}
