package host

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogger is an hclog.Logger that writes into a slog.Logger. go-plugin logs
// through it, including what the plugin process writes to stderr.
type hclogger struct {
	l     *slog.Logger
	name  string
	level hclog.Level
	args  []any
}

var _ hclog.Logger = (*hclogger)(nil)

func newHCLogger(l *slog.Logger) *hclogger { return &hclogger{l: l, level: hclog.Info} }

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (h *hclogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || level < h.level {
		return
	}
	all := withoutPath(append([]any(nil), h.args...), args)
	if h.name != "" {
		all = append(all, "logger", h.name)
	}
	h.l.Log(context.Background(), slogLevel(level), msg, all...)
}

func (h *hclogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hclogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hclogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hclogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hclogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hclogger) IsTrace() bool { return h.level <= hclog.Trace }
func (h *hclogger) IsDebug() bool { return h.level <= hclog.Debug }
func (h *hclogger) IsInfo() bool  { return h.level <= hclog.Info }
func (h *hclogger) IsWarn() bool  { return h.level <= hclog.Warn }
func (h *hclogger) IsError() bool { return h.level <= hclog.Error }

func (h *hclogger) ImpliedArgs() []any { return h.args }

// With adds attributes (but "plugin", see withoutPath).
func (h *hclogger) With(args ...any) hclog.Logger {
	n := *h
	n.args = withoutPath(append([]any(nil), h.args...), args)
	return &n
}

// withoutPath appends the key-value pairs of args to dst, except those
// with the key "plugin": go-plugin names the program's path under it, and
// the host's logger already carries that attribute.
func withoutPath(dst, args []any) []any {
	for i := 0; i < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == "plugin" && i+1 < len(args) {
			continue
		}
		dst = append(dst, args[i:min(i+2, len(args))]...)
	}
	return dst
}

func (h *hclogger) Name() string { return h.name }

func (h *hclogger) Named(name string) hclog.Logger {
	n := *h
	if n.name != "" {
		n.name += "." + name
	} else {
		n.name = name
	}
	return &n
}

func (h *hclogger) ResetNamed(name string) hclog.Logger {
	n := *h
	n.name = name
	return &n
}

func (h *hclogger) SetLevel(level hclog.Level) { h.level = level }
func (h *hclogger) GetLevel() hclog.Level      { return h.level }

func (h *hclogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hclogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		h.Info(string(trimNL(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}
