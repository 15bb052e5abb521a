package command_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

func BenchmarkDecodeCommand(b *testing.B) {
	body := []byte(`{"v":1,"id":"c-5f2a9b0c1d2e3f4a5b6c7d8e","name":"device.write","args":{"device":"bay-017","point":"led","value":"red"},"issued":"2026-11-25T19:30:00Z","expires":"2026-11-25T19:30:10Z"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := payload.DecodeCommand(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExecute measures one cloud command end to end on the gateway:
// decode, id log append with fsync (twice), the write, the reply. The fsyncs
// dominate; commands/s is the executor's ceiling on this disk.
func BenchmarkExecute(b *testing.B) {
	r := newRig(b, b.TempDir(), nil)
	i := 0
	start := time.Now()
	for b.Loop() {
		id := fmt.Sprintf("b-%d", i)
		i++
		now := r.clock.Now()
		c := payload.Command{ID: id, Name: "ping", Issued: now, Expires: now.Add(time.Minute)}
		body, _ := c.Encode()
		r.exec.Handle(topic(id), body)
		if rep := r.reply(id); rep.Status != payload.ReplyOK {
			b.Fatalf("%+v", rep)
		}
		r.clock.Advance(10 * time.Second) // ids expire and are forgotten, as in service
	}
	b.ReportMetric(float64(i)/time.Since(start).Seconds(), "commands/s")
}
