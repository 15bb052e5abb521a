package broker

import (
	"context"
	"log/slog"
)

// emptyMessage is what a log line without a message says instead.
const emptyMessage = "broker: connection error"

// namedEmpty wraps the broker's log handler so that no line goes out with
// an empty message: mochi's listeners log a failed connection as
// Warn("", "error", err), which shows as "level=WARN msg=" and says nothing
// to whoever reads the log.
func namedEmpty(h slog.Handler) slog.Handler { return emptyMsgHandler{h} }

type emptyMsgHandler struct{ slog.Handler }

func (h emptyMsgHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "" {
		r.Message = emptyMessage
	}
	return h.Handler.Handle(ctx, r)
}

func (h emptyMsgHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return emptyMsgHandler{h.Handler.WithAttrs(attrs)}
}

func (h emptyMsgHandler) WithGroup(name string) slog.Handler {
	return emptyMsgHandler{h.Handler.WithGroup(name)}
}
