package host

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/internal/wire"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// fakePlugin is the plugin's end of a direct channel, scripted per
// connection by the test.
func fakePlugin(t *testing.T, serve ...func(fc *wire.FrameConn)) *direct {
	t.Helper()
	path := filepath.Join(t.TempDir(), wire.DirectSocketName)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for _, s := range serve {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s(wire.NewFrameConn(c))
			}()
		}
	}()
	p := &Plugin{opts: Options{Name: "dev-1"}}
	return &direct{path: path, bus: &busServer{name: "dev-1", tx: echoTx{}, p: p}}
}

type echoTx struct{}

func (echoTx) Transact(_ context.Context, req []byte, _ drivers.FrameLenFunc) ([]byte, error) {
	return append([]byte("re:"), req...), nil
}

func readPoll(t *testing.T, fc *wire.FrameConn) wire.Frame {
	var f wire.Frame
	if err := fc.Read(&f); err != nil || f.Body != wire.BodyPoll {
		t.Errorf("plugin read %v, %v; want a poll", f.Body, err)
	}
	return f
}

func reading(n int64) payload.Record {
	return payload.Record{Measurement: "test", Fields: map[string]payload.Value{"n": payload.Int(n)}}
}

// TestDirectServesTransactionsInline: bus transactions the plugin makes
// during a poll are answered on the same connection, in order, and the
// poll's reply comes back with its records and events.
func TestDirectServesTransactionsInline(t *testing.T) {
	d := fakePlugin(t, func(fc *wire.FrameConn) {
		for range 2 {
			poll := readPoll(t, fc)
			if poll.Deadline == 0 {
				t.Error("poll carries no deadline")
			}
			var replies []string
			for n := uint64(1); n <= 2; n++ {
				req := wire.Frame{Call: poll.Call, Transact: n, Body: wire.BodyTransactRequest,
					TransactRequest: &pb.TransactRequest{Request: []byte{byte('0' + n)}, Rule: wire.RuleToProto(wire.FrameRule{Kind: wire.Fixed, Length: 4})}}
				if err := fc.Write(&req); err != nil {
					t.Error(err)
					return
				}
				var in wire.Frame
				if err := fc.Read(&in); err != nil || in.Body != wire.BodyTransactReply || in.Transact != n || in.Call != poll.Call {
					t.Errorf("transaction %d: got %+v, %v", n, in, err)
					return
				}
				replies = append(replies, string(in.TransactReply.Reply))
			}
			r := reading(int64(poll.Call))
			r.Fields["replies"] = payload.String(strings.Join(replies, ","))
			fc.Write(&wire.Frame{Call: poll.Call, Body: wire.BodyPollReply, Records: []payload.Record{r}, Events: []payload.Record{reading(99)}})
		}
	})
	for call := int64(1); call <= 2; call++ {
		reply, err := d.poll(context.Background(), time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if len(reply.records) != 1 || reply.records[0].Fields["n"].Int() != call || reply.records[0].Fields["replies"].Str() != "re:1,re:2" {
			t.Fatalf("poll %d: records %+v", call, reply.records)
		}
		if len(reply.events) != 1 || reply.events[0].Fields["n"].Int() != 99 {
			t.Fatalf("poll %d: events %+v", call, reply.events)
		}
	}
	if n := d.bus.p.stats.transactions.Load(); n != 4 {
		t.Errorf("%d transactions counted, want 4", n)
	}
}

// TestDirectRefusesBadReplies: a plugin that breaks the protocol fails the
// poll with errDirect (the session is then restarted), naming what was
// wrong.
func TestDirectRefusesBadReplies(t *testing.T) {
	for name, c := range map[string]struct {
		reply func(fc *wire.FrameConn, poll wire.Frame)
		want  string
	}{
		"junk": {func(fc *wire.FrameConn, _ wire.Frame) {
			fc.Conn().Write(binary.LittleEndian.AppendUint32(nil, 3))
			fc.Conn().Write([]byte{0xff, 0xff, 0xff})
		}, "malformed"},
		"other call": {func(fc *wire.FrameConn, poll wire.Frame) {
			fc.Write(&wire.Frame{Call: poll.Call + 7, Body: wire.BodyPollReply})
		}, "a frame for poll 8 during poll 1"},
		"poll back": {func(fc *wire.FrameConn, poll wire.Frame) {
			fc.Write(&wire.Frame{Call: poll.Call, Body: wire.BodyPoll})
		}, "a poll frame during a poll"},
		"hang up": {func(fc *wire.FrameConn, _ wire.Frame) {}, "EOF"},
		"oversized": {func(fc *wire.FrameConn, _ wire.Frame) {
			fc.Conn().Write(binary.LittleEndian.AppendUint32(nil, wire.MaxDirectFrame+1))
		}, "larger than"},
	} {
		d := fakePlugin(t, func(fc *wire.FrameConn) { c.reply(fc, readPoll(t, fc)) })
		_, err := d.poll(context.Background(), time.Now().Add(5*time.Second))
		if !errors.Is(err, errDirect) || !broken(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: poll = %v, want errDirect containing %q", name, err, c.want)
		}
	}
}

// TestDirectCutRedials: a poll that passes its deadline is cut (errCut, not
// a broken channel); the next poll runs on a new connection while the old
// one is abandoned, and a late reply on it is never read.
func TestDirectCutRedials(t *testing.T) {
	late := make(chan struct{})
	d := fakePlugin(t,
		func(fc *wire.FrameConn) {
			poll := readPoll(t, fc)
			<-late
			fc.Write(&wire.Frame{Call: poll.Call, Body: wire.BodyPollReply, Records: []payload.Record{reading(-1)}})
		},
		func(fc *wire.FrameConn) {
			poll := readPoll(t, fc)
			fc.Write(&wire.Frame{Call: poll.Call, Body: wire.BodyPollReply, Records: []payload.Record{reading(2)}})
		})
	_, err := d.poll(context.Background(), time.Now().Add(50*time.Millisecond))
	if !errors.Is(err, errCut) || errors.Is(err, errDirect) {
		t.Fatalf("first poll = %v, want errCut", err)
	}
	close(late)
	reply, err := d.poll(context.Background(), time.Now().Add(5*time.Second))
	if err != nil || len(reply.records) != 1 || reply.records[0].Fields["n"].Int() != 2 {
		t.Fatalf("second poll = %+v, %v", reply.records, err)
	}
}

// TestDirectCancel: cancelling the caller's context ends a poll at once,
// long before its deadline; close fails later polls.
func TestDirectCancel(t *testing.T) {
	d := fakePlugin(t, func(fc *wire.FrameConn) { readPoll(t, fc); time.Sleep(time.Minute) }) // plays a plugin that never answers
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := d.poll(ctx, time.Now().Add(time.Minute))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("poll = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("cancelled poll returned after %v", el)
	}
	d.close()
	if _, err := d.poll(context.Background(), time.Now().Add(time.Second)); !errors.Is(err, errDirect) {
		t.Errorf("poll after close = %v", err)
	}
}
