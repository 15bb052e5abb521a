package sdk

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
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

// TestPollCtx: the poll's context behaves as a standard one: it ends at
// its deadline, or when the poll returns; contexts derived from it and
// AfterFunc follow it.
func TestPollCtx(t *testing.T) {
	c := &pollCtx{deadline: time.Now().Add(time.Hour)}
	if d, ok := c.Deadline(); !ok || !d.Equal(c.deadline) || c.Err() != nil {
		t.Fatalf("fresh: deadline %v %v, err %v", d, ok, c.Err())
	}
	if c.Value(directKey{}) != &c.dp || c.Value("other") != nil {
		t.Error("Value does not give the poll")
	}
	derived, cancel := context.WithCancel(c)
	defer cancel()
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	c.finish()
	for name, done := range map[string]<-chan struct{}{"Done": c.Done(), "derived": derived.Done(), "AfterFunc": ran} {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s not closed after the poll returned", name)
		}
	}
	if !errors.Is(c.Err(), context.Canceled) || !errors.Is(derived.Err(), context.Canceled) {
		t.Errorf("after finish: %v, derived %v", c.Err(), derived.Err())
	}

	// Finished before anyone asked for Done: Done is closed when asked.
	c2 := &pollCtx{deadline: time.Now().Add(time.Hour)}
	c2.finish()
	if c2.Err() != context.Canceled {
		t.Errorf("finished: %v", c2.Err())
	}
	select {
	case <-c2.Done():
	default:
		t.Error("Done of a finished poll is open")
	}

	// Past the deadline.
	c3 := &pollCtx{deadline: time.Now().Add(-time.Millisecond)}
	if !errors.Is(c3.Err(), context.DeadlineExceeded) {
		t.Errorf("past deadline: %v", c3.Err())
	}
	select {
	case <-c3.Done():
	case <-time.After(10 * time.Second):
		t.Error("Done open past the deadline")
	}
}

// eventDriver raises one event per poll.
type eventDriver struct {
	busDriver
	n int
}

func (d *eventDriver) Poll(context.Context) ([]payload.Record, error) {
	d.n++
	return []payload.Record{{Measurement: "test", Fields: map[string]payload.Value{"n": payload.Int(int64(d.n))}}}, nil
}

func (d *eventDriver) TakeEvents() []payload.Record {
	return []payload.Record{{Measurement: "test_event", Fields: map[string]payload.Value{"n": payload.Int(int64(d.n))}}}
}

// TestDirectKeepsEventsOfALostReply: when the gateway's end is gone before
// the reply is written (a poll cut at its deadline), the events the reply
// carried go with the next reply, on the next connection.
func TestDirectKeepsEventsOfALostReply(t *testing.T) {
	s := &server{d: &eventDriver{}, configured: true}
	hostEnd, pluginEnd := net.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); s.serveDirect(wire.NewFrameConn(pluginEnd)) }()
	host := wire.NewFrameConn(hostEnd)
	if err := host.Write(&wire.Frame{Call: 1, Body: wire.BodyPoll}); err != nil {
		t.Fatal(err)
	}
	hostEnd.Close() // gone before the reply
	<-done

	hostEnd, pluginEnd = net.Pipe()
	defer hostEnd.Close()
	go s.serveDirect(wire.NewFrameConn(pluginEnd))
	host = wire.NewFrameConn(hostEnd)
	if err := host.Write(&wire.Frame{Call: 2, Body: wire.BodyPoll}); err != nil {
		t.Fatal(err)
	}
	var f wire.Frame
	if err := host.Read(&f); err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, e := range f.Events {
		got = append(got, e.Fields["n"].Int())
	}
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("events %v, want the lost reply's (1) and this poll's (2)", got)
	}
}

// TestListenerClosesWhenSocketRemoved: a listener whose socket the gateway
// removed closes.
func TestListenerClosesWhenSocketRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), wire.DirectSocketName)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() { defer close(done); closeWhenRemoved(ln, path, 10*time.Millisecond) }()
	time.Sleep(30 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("closed while the socket is there")
	default:
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	<-done
	if _, err := ln.Accept(); err == nil {
		t.Error("listener still accepts")
	}
}
