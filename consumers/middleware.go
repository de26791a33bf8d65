package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/cenkalti/backoff/v4"

	"github.com/callstream/callstream/schemas"
)

// Reasons a message cannot be decoded. They are permanent: such a message
// goes to the DLQ without retries, and its DLQ reason starts with the text
// of one of these.
var (
	ErrNotJSON        = errors.New("not JSON")
	ErrSchema         = errors.New("schema violation")
	ErrUnknownVersion = errors.New("unknown major version")
)

// errShuttingDown marks a message whose retries were cut short by shutdown:
// it is nacked, not poisoned, so the next run gets it again.
var errShuttingDown = errors.New("consumer shutting down")

// maxReasonLen bounds the DLQ reason header; a panic's or a driver's message
// can be long.
const maxReasonLen = 2000

type (
	eventKey   struct{}
	outcomeKey struct{}
)

// outcomeNote lets the poison middleware tell the metrics middleware,
// further out, that a nil error meant "poisoned", not "handled".
type outcomeNote struct{ poisoned bool }

// metricsMiddleware counts each message's outcome and times it. It is the
// outermost middleware, so its time covers retries, batching and the DLQ.
func metricsMiddleware(m *metrics, plugin string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			start := time.Now()
			note := &outcomeNote{}
			msg.SetContext(context.WithValue(msg.Context(), outcomeKey{}, note))
			out, err := h(msg)
			outcome := outcomeHandled
			switch {
			case err != nil:
				outcome = outcomeFailed
			case note.poisoned:
				outcome = outcomePoisoned
			}
			m.messages.WithLabelValues(plugin, outcome).Inc()
			m.processing.WithLabelValues(plugin).Observe(time.Since(start).Seconds())
			return out, err
		}
	}
}

// recoverMiddleware turns a panic below it into an error, so a panicking
// plug-in is retried and then poisoned like a failing one, and a panic in
// the runtime's own code nacks the message instead of killing the process.
// what names the code below it in the error ("plug-in storage").
func recoverMiddleware(logger *slog.Logger, plugin, what string) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) (out []*message.Message, err error) {
			defer func() {
				if r := recover(); r != nil {
					logger.Error("consumer panicked", "plugin", plugin, "in", what, "message_uuid", msg.UUID,
						"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					out, err = nil, fmt.Errorf("%s panicked: %v", what, r)
				}
			}()
			return h(msg)
		}
	}
}

// poisonMiddleware acknowledges a message that failed for good after
// publishing a copy of it to the DLQ topic, with the reason and the origin
// in metadata. If the DLQ publish fails, the message is nacked and comes
// back: nothing is dropped.
func poisonMiddleware(pub message.Publisher, dlqTopic, plugin, sourceTopic string, logger *slog.Logger) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil || errors.Is(err, errShuttingDown) {
				return out, err
			}
			dead := deadLetter(msg, err, plugin, sourceTopic)
			if perr := pub.Publish(dlqTopic, dead); perr != nil {
				return nil, errors.Join(err, fmt.Errorf("consumers: publish to DLQ %s: %w", dlqTopic, perr))
			}
			if note, ok := msg.Context().Value(outcomeKey{}).(*outcomeNote); ok {
				note.poisoned = true
			}
			logger.Warn("message sent to the DLQ", "plugin", plugin, "message_uuid", msg.UUID,
				"topic", dead.Metadata.Get(schemas.DLQTopicMetadata),
				"partition", dead.Metadata.Get(schemas.DLQPartitionMetadata),
				"offset", dead.Metadata.Get(schemas.DLQOffsetMetadata),
				"reason", dead.Metadata.Get(schemas.DLQReasonMetadata))
			return nil, nil
		}
	}
}

// deadLetter copies msg (payload and metadata, so the partition key stays)
// and adds the DLQ metadata.
func deadLetter(msg *message.Message, err error, plugin, sourceTopic string) *message.Message {
	dead := msg.Copy()
	reason := err.Error()
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen] + "..."
	}
	topic := msg.Metadata.Get(schemas.TopicMetadata)
	if topic == "" {
		topic = sourceTopic
	}
	dead.Metadata.Set(schemas.DLQReasonMetadata, reason)
	dead.Metadata.Set(schemas.DLQHandlerMetadata, plugin)
	dead.Metadata.Set(schemas.DLQTopicMetadata, topic)
	dead.Metadata.Set(schemas.DLQPartitionMetadata, msg.Metadata.Get(schemas.PartitionMetadata))
	dead.Metadata.Set(schemas.DLQOffsetMetadata, msg.Metadata.Get(schemas.OffsetMetadata))
	dead.Metadata.Set(schemas.DLQTimeMetadata, time.Now().UTC().Format(time.RFC3339Nano))
	return dead
}

// decodeMiddleware checks the event's major version, that the payload is
// JSON and that it matches the call event schema, and hands the decoded
// event down in the message's context. Anything it rejects is permanent.
func decodeMiddleware(v *schemas.Validator) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ev, err := decode(v, msg)
			if err != nil {
				return nil, Permanent(err)
			}
			msg.SetContext(context.WithValue(msg.Context(), eventKey{}, ev))
			return h(msg)
		}
	}
}

func decode(v *schemas.Validator, msg *message.Message) (schemas.CallEvent, error) {
	// A record without ce_type (a hand-made test message, an older
	// producer) is judged by its payload alone.
	if t := msg.Metadata.Get(schemas.HeaderType); t != "" {
		if mv := schemas.MajorVersion(t); mv != "v1" {
			return schemas.CallEvent{}, fmt.Errorf("%w: ce_type %q has major version %q, this consumer knows v1", ErrUnknownVersion, t, mv)
		}
	}
	if bad := msg.Metadata.Get(schemas.UnmarshalErrorMetadata); bad != "" {
		return schemas.CallEvent{}, fmt.Errorf("%w: record could not be unmarshalled: %s", ErrNotJSON, bad)
	}
	ev, err := v.DecodeCall(msg.Payload)
	if err == nil {
		return ev, nil
	}
	// Telling the two failures apart only on the error path keeps the
	// common path at one parse for validation and one for decoding.
	if !json.Valid(msg.Payload) {
		return schemas.CallEvent{}, fmt.Errorf("%w: payload of %d bytes does not parse as JSON", ErrNotJSON, len(msg.Payload))
	}
	return schemas.CallEvent{}, fmt.Errorf("%w: %v", ErrSchema, err)
}

// eventFrom returns the event decodeMiddleware put in the message's context.
func eventFrom(msg *message.Message) (schemas.CallEvent, bool) {
	ev, ok := msg.Context().Value(eventKey{}).(schemas.CallEvent)
	return ev, ok
}

// retryMiddleware retries a failing handler with exponential backoff and
// jitter, at most cfg.MaxRetries times. Permanent errors are not retried.
// When stop is done it gives up waiting and returns errShuttingDown, so the
// message is nacked rather than poisoned. onFail sees every failed attempt.
func retryMiddleware(cfg Config, stop context.Context, plugin string, onFail func(error)) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			exp := backoff.NewExponentialBackOff(
				backoff.WithInitialInterval(cfg.RetryInitialInterval),
				backoff.WithMaxInterval(cfg.RetryMaxInterval),
				backoff.WithMaxElapsedTime(0),
			)
			policy := backoff.WithContext(backoff.WithMaxRetries(exp, uint64(cfg.MaxRetries)), stop)
			var out []*message.Message
			var last error
			attempts := 0
			err := backoff.Retry(func() error {
				attempts++
				var err error
				out, err = h(msg)
				if err == nil {
					return nil
				}
				last = err
				onFail(err)
				if IsPermanent(err) {
					return backoff.Permanent(err)
				}
				return err
			}, policy)
			switch {
			case err == nil:
				return out, nil
			case IsPermanent(err):
				return nil, err
			case stop.Err() != nil:
				return nil, fmt.Errorf("%w after %d attempts: %v", errShuttingDown, attempts, last)
			default:
				return nil, fmt.Errorf("plug-in %s failed %d times: %w", plugin, attempts, err)
			}
		}
	}
}

// chain applies middlewares so that the first one is the outermost, as in
// watermill's Router.
func chain(h message.HandlerFunc, mws ...message.HandlerMiddleware) message.HandlerFunc {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}
