package outbox

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// logBuf collects log output for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// fixedNow is a fake clock that advances by one millisecond per call.
func fixedNow() func() time.Time {
	var mu sync.Mutex
	t := t0
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

func testOptions(dir string, lb *logBuf) Options {
	return Options{
		Dir: dir, Site: "lot-7", Gateway: "gw-01",
		Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    fixedNow(),
	}
}

func mustOpen(t testing.TB, opts Options) *Outbox {
	t.Helper()
	o, err := Open(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return o
}

// bay is a realistic parking_bay reading; n makes it identifiable.
func bay(device string, n int) payload.Record {
	return payload.Record{
		Measurement: "parking_bay",
		Tags:        map[string]string{"device": device, "lot": "north", "zone": "b", "bay": fmt.Sprintf("b-%03d", n%200)},
		Fields: map[string]payload.Value{
			"occupied":    payload.Bool(n%3 == 0),
			"distance_cm": payload.Float(float64(n%400) + 0.5),
			"n":           payload.Int(int64(n)),
		},
		Time: t0.Add(time.Duration(n) * time.Millisecond),
	}
}

// door is an event record.
func door(device string, n int) payload.Record {
	return payload.Record{
		Measurement: "door",
		Tags:        map[string]string{"door": device},
		Fields: map[string]payload.Value{
			"state": payload.String("open"), "open": payload.Bool(true), "n": payload.Int(int64(n)),
		},
		Time: t0.Add(time.Duration(n) * time.Millisecond),
	}
}

func appendOne(t testing.TB, o *Outbox, kind payload.Kind, recs ...payload.Record) {
	t.Helper()
	if err := o.Append(context.Background(), kind, recs); err != nil {
		t.Fatalf("append %s: %v", kind, err)
	}
}

// pendingAll returns every unacknowledged message, oldest first, without
// blocking: it asks for as many as Stats says there are.
func pendingAll(t testing.TB, o *Outbox) []payload.Message {
	t.Helper()
	want := int(o.Stats().Unacked.Messages)
	var out []payload.Message
	var after uint64
	for len(out) < want {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		msgs, err := o.Pending(ctx, after, want-len(out))
		cancel()
		if err != nil {
			t.Fatalf("pending after %d: %v", after, err)
		}
		out = append(out, msgs...)
		after = msgs[len(msgs)-1].Seq
	}
	return out
}

func seqsOf(msgs []payload.Message) []uint64 {
	s := make([]uint64, len(msgs))
	for i, m := range msgs {
		s[i] = m.Seq
	}
	return s
}

func seqRangeList(lo, hi uint64) []uint64 {
	var s []uint64
	for i := lo; i <= hi; i++ {
		s = append(s, i)
	}
	return s
}

// decode decodes a message body with the cloud's strict decoder and checks
// that it agrees with the message's metadata.
func decode(t testing.TB, m payload.Message) *payload.Batch {
	t.Helper()
	b, err := payload.DecodeBatch(m.Body)
	if err != nil {
		t.Fatalf("message %d: decode: %v", m.Seq, err)
	}
	if b.Seq != m.Seq || b.Kind != m.Kind || len(b.Records) != m.Records || b.Site != "lot-7" || b.Gateway != "gw-01" {
		t.Fatalf("message %d: body says seq %d kind %s %d records %s/%s; message says seq %d kind %s %d records",
			m.Seq, b.Seq, b.Kind, len(b.Records), b.Site, b.Gateway, m.Seq, m.Kind, m.Records)
	}
	return b
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), segSuffix) {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out
}

func segPath(t testing.TB, dir string, kind payload.Kind) []string {
	t.Helper()
	var out []string
	for _, n := range segFiles(t, dir) {
		if strings.HasPrefix(n, kind.String()+"-") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}
