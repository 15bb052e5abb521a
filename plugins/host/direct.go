package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/internal/wire"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// errDirect means the direct channel to the plugin broke: the process died,
// closed the socket, or sent something that is not the protocol. The
// session is then restarted like after a crash.
var errDirect = errors.New("direct channel to the plugin broke")

// errCut means a poll over the direct channel passed its deadline.
var errCut = errors.New("poll cut at its deadline")

// direct is the host's end of a session's direct channel (see
// device.proto). The goroutine that polls does all the work: it writes the
// poll, answers the plugin's bus transactions itself and reads the reply,
// so a poll costs no hand-off between goroutines.
type direct struct {
	path string
	bus  *busServer

	mu   sync.Mutex // one poll at a time; guards call, out and in
	call uint64
	out  wire.Frame
	in   wire.Frame

	connMu sync.Mutex // guards fc and closed; held only briefly
	fc     *wire.FrameConn
	closed bool
}

// pollReply is what a poll over the direct channel brought: records and
// events not yet checked (see wire.CheckRecord), and the plugin's error.
type pollReply struct {
	records, events []payload.Record
	err             *pb.Error
}

// poll polls the plugin over the direct channel. The deadline, or a ctx
// that ends, cuts the call: the connection is closed (the plugin may still
// answer on it) and the next poll dials a new one.
func (d *direct) poll(ctx context.Context, deadline time.Time) (pollReply, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fc, err := d.conn(ctx, deadline)
	if err != nil {
		return pollReply{}, err
	}
	reply, err := d.exchange(ctx, deadline, fc)
	if err != nil {
		d.drop(fc)
		switch {
		case ctx.Err() != nil:
			return pollReply{}, ctx.Err()
		case wire.IsTimeout(err):
			// Not errDirect: the channel is fine, the plugin is slow.
			return pollReply{}, fmt.Errorf("%w (%v)", errCut, err)
		}
		return pollReply{}, err
	}
	return reply, nil
}

// conn returns the connection, dialing when there is none.
func (d *direct) conn(ctx context.Context, deadline time.Time) (*wire.FrameConn, error) {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("%w: session ended", errDirect)
	}
	if d.fc == nil {
		dialer := net.Dialer{Deadline: deadline}
		c, err := dialer.DialContext(ctx, "unix", d.path)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: dial %s: %w", errDirect, d.path, err)
		}
		d.fc = wire.NewFrameConn(c)
	}
	return d.fc, nil
}

// drop closes fc and forgets it, so that the next poll dials afresh.
func (d *direct) drop(fc *wire.FrameConn) {
	fc.Close()
	d.connMu.Lock()
	if d.fc == fc {
		d.fc = nil
	}
	d.connMu.Unlock()
}

func (d *direct) exchange(ctx context.Context, deadline time.Time, fc *wire.FrameConn) (pollReply, error) {
	if err := fc.SetDeadline(deadline); err != nil {
		return pollReply{}, fmt.Errorf("%w: %w", errDirect, err)
	}
	d.call++
	out, in := &d.out, &d.in
	*out = wire.Frame{Call: d.call, Body: wire.BodyPoll, Deadline: deadline.UnixNano()}
	if err := fc.Write(out); err != nil {
		return pollReply{}, fmt.Errorf("%w: send poll: %w", errDirect, err)
	}
	for {
		if err := fc.ReadBy(ctx, deadline, in); err != nil {
			return pollReply{}, fmt.Errorf("%w: read poll %d: %w", errDirect, d.call, err)
		}
		if in.Call != d.call {
			return pollReply{}, fmt.Errorf("%w: a frame for poll %d during poll %d: %w", errDirect, in.Call, d.call, wire.ErrDirectFrame)
		}
		switch in.Body {
		case wire.BodyPollReply:
			return pollReply{records: in.Records, events: in.Events, err: in.Err}, nil
		case wire.BodyTransactRequest:
			reply, _ := d.bus.Transact(ctx, in.TransactRequest)
			*out = wire.Frame{Call: d.call, Transact: in.Transact, Body: wire.BodyTransactReply, TransactReply: reply}
			if err := fc.Write(out); err != nil {
				return pollReply{}, fmt.Errorf("%w: send transaction %d of poll %d: %w", errDirect, in.Transact, d.call, err)
			}
		default:
			return pollReply{}, fmt.Errorf("%w: a %s frame during a poll, want poll_reply or transact_request: %w", errDirect, in.Body, wire.ErrDirectFrame)
		}
	}
}

// close ends the channel at once; a poll in progress fails.
func (d *direct) close() {
	d.connMu.Lock()
	defer d.connMu.Unlock()
	d.closed = true
	if d.fc != nil {
		d.fc.Close()
		d.fc = nil
	}
}
