package sdk

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/payload"
	"github.com/luling-edge/luling/plugins/internal/wire"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// busDriver makes two bus transactions per poll: the first with a short
// timeout of its own, the second with the poll's context.
type busDriver struct {
	bus   Bus
	after chan error // the outcome of a transaction made after Poll returned
	ctx   context.Context
}

func (d *busDriver) Describe() Description                              { return Description{Name: "bus"} }
func (d *busDriver) Configure(context.Context, Env) error               { return nil }
func (d *busDriver) TakeEvents() []payload.Record                       { return nil }
func (d *busDriver) Write(context.Context, string, payload.Value) error { return nil }

func (d *busDriver) Poll(ctx context.Context) ([]payload.Record, error) {
	d.ctx = ctx
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	_, first := d.bus.Transact(short, []byte("one"), FixedLength(3))
	cancel()
	second, err := d.bus.Transact(ctx, []byte("two"), FixedLength(3))
	if err != nil {
		return nil, err
	}
	return []payload.Record{{Measurement: "test", Fields: map[string]payload.Value{
		"second": payload.String(string(second)), "first_timed_out": payload.Bool(errors.Is(first, ErrTimeout)),
	}}}, nil
}

// TestDirectSkipsLateTransactReplies: a transaction whose caller gave up
// gets its reply late; the plugin skips it and the next transaction reads
// its own reply.
func TestDirectSkipsLateTransactReplies(t *testing.T) {
	drv := &busDriver{bus: &remoteBus{}}
	s := &server{d: drv, configured: true}
	hostEnd, pluginEnd := net.Pipe()
	defer hostEnd.Close()
	go s.serveDirect(wire.NewFrameConn(pluginEnd))
	host := wire.NewFrameConn(hostEnd)
	if err := host.Write(&wire.Frame{Call: 1, Deadline: time.Now().Add(10 * time.Second).UnixNano(), Body: wire.BodyPoll}); err != nil {
		t.Fatal(err)
	}
	// Hold the first transaction's reply until the second request shows
	// that the plugin gave up on it.
	var reqs []wire.Frame
	for range 2 {
		var f wire.Frame
		if err := host.Read(&f); err != nil || f.Body != wire.BodyTransactRequest {
			t.Fatalf("read %v, %v; want a transact request", f.Body, err)
		}
		reqs = append(reqs, f)
	}
	for _, r := range reqs {
		reply := &pb.TransactResponse{Reply: []byte("re" + string(r.TransactRequest.Request[:1]))}
		if err := host.Write(&wire.Frame{Call: 1, Transact: r.Transact, Body: wire.BodyTransactReply, TransactReply: reply}); err != nil {
			t.Fatal(err)
		}
	}
	var f wire.Frame
	if err := host.Read(&f); err != nil || f.Body != wire.BodyPollReply || f.Err != nil || len(f.Records) != 1 {
		t.Fatalf("read %+v, %v; want a poll reply with one record", f, err)
	}
	if r := f.Records[0]; r.Fields["second"].Str() != "ret" || !r.Fields["first_timed_out"].Bool() {
		t.Errorf("record %+v: want the second reply and the first transaction timed out", r.Fields)
	}

	// After the poll, its context no longer reaches the direct channel.
	dp := drv.ctx.Value(directKey{}).(*directPoll)
	if _, used, _ := dp.transact(drv.ctx, &pb.TransactRequest{Request: []byte("x")}); used {
		t.Error("a transaction after the poll returned went over the direct channel")
	}
}

// TestDirectHostGoneMidPoll: when the gateway's end closes during a
// transaction, the transaction fails with ErrBusDown and the plugin drops
// the connection without a reply.
func TestDirectHostGoneMidPoll(t *testing.T) {
	drv := &busDriver{bus: &remoteBus{}}
	s := &server{d: drv, configured: true}
	hostEnd, pluginEnd := net.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); s.serveDirect(wire.NewFrameConn(pluginEnd)) }()
	host := wire.NewFrameConn(hostEnd)
	if err := host.Write(&wire.Frame{Call: 1, Body: wire.BodyPoll}); err != nil {
		t.Fatal(err)
	}
	var f wire.Frame
	if err := host.Read(&f); err != nil || f.Body != wire.BodyTransactRequest {
		t.Fatalf("read %v, %v", f.Body, err)
	}
	hostEnd.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the plugin kept serving a closed connection")
	}
}
