package payload_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

func FuzzDecodeCommand(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"c-1","name":"device.write","args":{"device":"bay-1","point":"led","value":"red"},"issued":"2026-11-25T19:00:00Z","expires":"2026-11-25T19:05:00Z"}`))
	f.Add([]byte(`{"v":1,"id":"p","name":"relay.pulse","args":{"device":"gate-1","point":"relay","on":true,"off":false,"duration":"1.5s"},"issued":"2026-11-25T19:00:00.123456789+08:00","expires":"2026-11-25T19:00:30+08:00"}`))
	f.Add([]byte(`{"v":1,"id":"x","name":"ping","args":null,"issued":"2026-11-25T19:00:00Z","expires":"2026-11-25T19:00:01Z"}`))
	f.Add([]byte(`{"v":1,"id":"x","name":"ping","args":{"n":1e400},"issued":"2026-11-25T19:00:00Z","expires":"2026-11-25T19:00:01Z"}`))
	f.Add([]byte(`{"v":1,"id":"a/b","name":"ping"}`))
	f.Add([]byte(`{"v":1.5}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Add([]byte(`{"v":1,"id":"x","name":"ping","issued":"2026-11-25T19:00:00Z","expires":"2026-11-25T19:00:01Z"} x`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := payload.DecodeCommand(b)
		if err != nil {
			if c != nil {
				t.Fatal("command and error")
			}
			return
		}
		if !payload.ValidCommandID(c.ID) || !payload.ValidCommandName(c.Name) || !c.Expires.After(c.Issued) || c.Expires.Sub(c.Issued) > payload.MaxCommandLifetime || c.Args == nil {
			t.Fatalf("accepted an invalid command %+v", c)
		}
		for k, v := range c.Args {
			payload.ArgValue(v) // must not panic, whatever the argument
			_ = k
		}
		// What is accepted survives a round trip.
		enc, err := c.Encode()
		if err != nil {
			t.Fatalf("encode %+v: %v", c, err)
		}
		c2, err := payload.DecodeCommand(enc)
		if err != nil {
			t.Fatalf("re-decode %s: %v", enc, err)
		}
		if c2.ID != c.ID || c2.Name != c.Name || !c2.Issued.Equal(c.Issued) || !c2.Expires.Equal(c.Expires) || !reflect.DeepEqual(c2.Args, c.Args) {
			t.Fatalf("round trip changed %+v into %+v", c, c2)
		}
	})
}

func FuzzDecodeReply(f *testing.F) {
	f.Add((&payload.Reply{ID: "c-1", Name: "ping", Status: payload.ReplyOK, Result: map[string]any{"time": "x"}, Executed: time.Unix(1, 0)}).Encode())
	f.Add([]byte(`{"v":1,"id":"c","status":"maybe","executed":"2026-11-25T19:00:00Z"}`))
	f.Add([]byte(`{"v":1,"id":"","status":"ok"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := payload.DecodeReply(b)
		if err != nil {
			return
		}
		if !payload.ValidCommandID(r.ID) || r.Executed.IsZero() {
			t.Fatalf("accepted %+v", r)
		}
		if _, err := payload.DecodeReply(r.Encode()); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
