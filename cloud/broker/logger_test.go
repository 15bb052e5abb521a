package broker

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

// recordHandler keeps every record's level and message.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) records() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Record(nil), h.recs...)
}

// Every line the embedded broker logs (mochi's own included) has a message:
// a field report showed "level=WARN msg=" lines for connections that ended
// before CONNECT.
func TestBrokerLogLinesHaveAMessage(t *testing.T) {
	h := &recordHandler{}
	b, err := Start(Config{Listen: "127.0.0.1:0", ConnectTimeout: 200 * time.Millisecond, Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	// Garbage instead of CONNECT, a connection closed at once, one left idle.
	for _, send := range []string{"GET / HTTP/1.0\r\n\r\n", "", "idle"} {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if send != "idle" {
			c.Write([]byte(send))
			c.Close()
			continue
		}
		defer c.Close()
	}
	// Wait for the idle connection's CONNECT timeout to close it.
	waitFor(t, "the broker's log of the refused connections", func() bool { return len(h.records()) >= 3 })
	b.Close()
	for _, r := range h.records() {
		if r.Message == "" {
			var attrs []any
			r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a.String()); return true })
			t.Errorf("%s line without a message: %v", r.Level, attrs)
		}
	}
	// And a line that comes without one gets one.
	h2 := &recordHandler{}
	log := slog.New(namedEmpty(h2))
	log.Warn("", "error", "EOF")
	if rs := h2.records(); len(rs) != 1 || rs[0].Message == "" {
		t.Errorf("empty message kept: %+v", rs)
	}
}
