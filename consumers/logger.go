package consumers

import (
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

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

// WatermillLogger adapts a slog logger for the watermill and bus
// constructors, which take a watermill.LoggerAdapter.
func WatermillLogger(l *slog.Logger) watermill.LoggerAdapter { return watermillLogger{l} }
