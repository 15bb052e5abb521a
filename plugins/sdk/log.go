package sdk

import (
	"context"
	"log/slog"
	"time"

	pb "github.com/luling-edge/luling/plugins/proto"
)

// logTimeout bounds one log call to the gateway.
const logTimeout = 2 * time.Second

// newLogger returns a logger whose records go to the gateway's Log service.
func newLogger(c pb.LogClient) *slog.Logger {
	return slog.New(&logHandler{c: c})
}

// logHandler is a slog.Handler over the Log service. Attributes travel as
// strings; groups become dotted key prefixes.
type logHandler struct {
	c      pb.LogClient
	attrs  []string
	prefix string
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	req := &pb.LogRequest{Message: r.Message, Attrs: append([]string(nil), h.attrs...)}
	switch {
	case r.Level >= slog.LevelError:
		req.Level = pb.LogRequest_LEVEL_ERROR
	case r.Level >= slog.LevelWarn:
		req.Level = pb.LogRequest_LEVEL_WARN
	case r.Level < slog.LevelInfo:
		req.Level = pb.LogRequest_LEVEL_DEBUG
	}
	r.Attrs(func(a slog.Attr) bool {
		req.Attrs = appendAttr(req.Attrs, h.prefix, a)
		return true
	})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logTimeout)
	defer cancel()
	_, err := h.c.Log(ctx, req)
	return err
}

func appendAttr(dst []string, prefix string, a slog.Attr) []string {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			dst = appendAttr(dst, p, g)
		}
		return dst
	}
	if a.Key == "" {
		return dst
	}
	return append(dst, prefix+a.Key, v.String())
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]string(nil), h.attrs...)
	for _, a := range as {
		n.attrs = appendAttr(n.attrs, h.prefix, a)
	}
	return &n
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix += name + "."
	return &n
}
