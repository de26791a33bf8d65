package consumers

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// heldSubscriber keeps the bus subscription open after the Router stops
// reading, until the runtime cancels bus: the messages still in flight when
// shutdown starts must be able to finish and have their offsets committed.
// It also bounds the messages in the plug-in's hands to cap(slots), which
// the handler frees as it returns: kafkabus bounds its own deliveries, but
// the GoChannel of embedded mode hands out everything at once.
// Its Close does nothing; the runtime closes the real subscriber last.
type heldSubscriber struct {
	sub   message.Subscriber
	bus   context.Context
	slots chan struct{}
}

func (h heldSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := h.sub.Subscribe(h.bus, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	go func() {
		defer close(out)
		for {
			select {
			case h.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case <-ctx.Done():
				return
			case m, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- m:
				case <-ctx.Done():
					// Never acknowledged, so never committed: the next
					// run gets it.
					return
				}
			}
		}
	}()
	return out, nil
}

func (heldSubscriber) Close() error { return nil }

// SharedSubscriber wraps a subscriber that outlives the runtime, such as the
// GoChannel shared with the producer in embedded mode: the runtime's Close
// of it does nothing. Subscriptions still end when the runtime stops.
func SharedSubscriber(sub message.Subscriber) message.Subscriber { return sharedSubscriber{sub} }

type sharedSubscriber struct{ message.Subscriber }

func (sharedSubscriber) Close() error { return nil }

// watermillLogger adapts slog to watermill's logger, one level down:
// watermill's Info is chatty about internals, so it becomes Debug.
type watermillLogger struct{ l *slog.Logger }

func (w watermillLogger) attrs(fields watermill.LogFields) []any {
	out := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		out = append(out, k, v)
	}
	return out
}

func (w watermillLogger) Error(msg string, err error, fields watermill.LogFields) {
	w.l.Error("watermill: "+msg, append(w.attrs(fields), "err", err)...)
}
func (w watermillLogger) Info(msg string, fields watermill.LogFields) {
	w.l.Debug("watermill: "+msg, w.attrs(fields)...)
}
func (w watermillLogger) Debug(msg string, fields watermill.LogFields) {}
func (w watermillLogger) Trace(msg string, fields watermill.LogFields) {}
func (w watermillLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return watermillLogger{w.l.With(w.attrs(fields)...)}
}

// WatermillLogger adapts a slog logger for the watermill and kafkabus
// constructors, which take a watermill.LoggerAdapter.
func WatermillLogger(l *slog.Logger) watermill.LoggerAdapter { return watermillLogger{l} }
