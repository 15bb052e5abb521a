package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/plugins/internal/wire"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// The plugin's end of the direct channel (see device.proto). Each
// connection is served by one goroutine that reads a poll, runs the
// driver's Poll on that same goroutine and writes the reply with the
// driver's events. A bus transaction made with the poll's context goes over
// the same connection while the poll runs: the goroutine that transacts
// writes the request and reads the reply itself. Transactions made with any
// other context, or after the poll returned, go over gRPC.

// listenDirect starts serving the direct channel in dir and returns the
// socket's path.
func (s *server) listenDirect(dir string) (string, error) {
	path := filepath.Join(dir, wire.DirectSocketName)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	old := s.ln
	s.ln = ln
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serveDirect(wire.NewFrameConn(c))
		}
	}()
	go closeWhenRemoved(ln, path, socketCheck)
	return path, nil
}

// socketCheck is how often a listener looks whether its socket is still
// there.
const socketCheck = 5 * time.Second

// closeWhenRemoved closes ln once its socket file is gone: the gateway
// removes the session's directory when it ends the session. A plugin
// process ends with its session anyway; a plugin served in-process (tests)
// would otherwise keep the listener.
func closeWhenRemoved(ln net.Listener, path string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			ln.Close()
			return
		}
	}
}

// directKey is the context key of the poll in progress on a connection.
type directKey struct{}

// pollCtx is the context a poll over the direct channel runs with: the
// gateway's deadline, and the poll for the bus. It is one allocation per
// poll; the machinery of a standard context (a timer, a channel) is made
// only when the driver asks for Done or derives a context from it.
type pollCtx struct {
	deadline time.Time
	dp       directPoll
	finished atomic.Bool
	mu       sync.Mutex
	inner    atomic.Pointer[lazyCtx]
}

type lazyCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (c *pollCtx) lazy() context.Context {
	if l := c.inner.Load(); l != nil {
		return l.ctx
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.inner.Load(); l != nil {
		return l.ctx
	}
	ctx, cancel := context.WithDeadline(context.Background(), c.deadline)
	c.inner.Store(&lazyCtx{ctx, cancel})
	if c.finished.Load() {
		cancel()
	}
	return ctx
}

// finish ends the context when the poll returns, as gRPC ends a call's.
func (c *pollCtx) finish() {
	c.finished.Store(true)
	if l := c.inner.Load(); l != nil {
		l.cancel()
	}
}

func (c *pollCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }
func (c *pollCtx) Done() <-chan struct{}       { return c.lazy().Done() }

func (c *pollCtx) Err() error {
	if l := c.inner.Load(); l != nil {
		return l.ctx.Err()
	}
	if c.finished.Load() {
		return context.Canceled
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

func (c *pollCtx) Value(key any) any {
	if key == (directKey{}) {
		return &c.dp
	}
	return nil
}

// AfterFunc lets context.AfterFunc, and contexts derived from this one,
// hook into the lazily made context instead of starting a goroutine each.
func (c *pollCtx) AfterFunc(f func()) func() bool { return context.AfterFunc(c.lazy(), f) }

// directPoll is one poll in progress on the direct channel.
type directPoll struct {
	fc   *wire.FrameConn
	call uint64

	mu     sync.Mutex // one transaction at a time; guards the rest
	n      uint64     // transactions sent
	done   bool       // the poll returned: transactions go over gRPC
	broken bool       // the connection failed
}

func (s *server) serveDirect(fc *wire.FrameConn) {
	defer fc.Close()
	var in, out wire.Frame
	for {
		if err := fc.SetDeadline(time.Time{}); err != nil {
			return
		}
		if err := fc.Read(&in); err != nil {
			if errors.Is(err, wire.ErrDirectFrame) {
				fmt.Fprintf(os.Stderr, "luling plugin: %v\n", err)
			}
			return
		}
		switch in.Body {
		case wire.BodyPoll:
		case wire.BodyTransactReply:
			// The late reply to a transaction whose caller gave up.
			continue
		default:
			fmt.Fprintf(os.Stderr, "luling plugin: direct channel: a %s frame where a poll was expected\n", in.Body)
			return
		}
		ctx := &pollCtx{dp: directPoll{fc: fc, call: in.Call}}
		if in.Deadline != 0 {
			ctx.deadline = time.Unix(0, in.Deadline)
		}
		recs, perr := s.poll(ctx)
		dp := &ctx.dp
		dp.mu.Lock()
		dp.done = true
		broken := dp.broken
		dp.mu.Unlock()
		ctx.finish()
		if broken {
			return
		}
		out = wire.Frame{Call: in.Call, Body: wire.BodyPollReply, Records: recs, Err: perr}
		if perr == nil {
			out.Events = s.takeEvents()
		}
		if err := fc.Write(&out); err != nil {
			s.keepUnsent(out.Events)
			return
		}
	}
}

// transact makes one bus transaction over the poll's connection. used is
// false when the poll is over and the caller must use gRPC.
func (dp *directPoll) transact(ctx context.Context, req *pb.TransactRequest) (resp *pb.TransactResponse, used bool, err error) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.done {
		return nil, false, nil
	}
	if dp.broken {
		return nil, true, fmt.Errorf("bus: the connection to the gateway failed earlier in this poll: %w", drivers.ErrBusDown)
	}
	fail := func(err error) (*pb.TransactResponse, bool, error) {
		if wire.IsTimeout(err) || ctx.Err() != nil {
			// The gateway may still answer; the reply is skipped when it
			// comes (here or in serveDirect).
			return nil, true, fmt.Errorf("bus: %w: %w", drivers.ErrTimeout, context.Cause(ctx))
		}
		dp.broken = true
		dp.fc.Close()
		return nil, true, fmt.Errorf("bus: gateway unreachable: %w: %w", drivers.ErrBusDown, err)
	}
	deadline, _ := ctx.Deadline()
	if err := dp.fc.SetDeadline(deadline); err != nil {
		return fail(err)
	}
	dp.n++
	out := wire.Frame{Call: dp.call, Transact: dp.n, Body: wire.BodyTransactRequest, TransactRequest: req}
	if err := dp.fc.Write(&out); err != nil {
		return fail(err)
	}
	var in wire.Frame
	for {
		if err := dp.fc.ReadBy(ctx, deadline, &in); err != nil {
			return fail(err)
		}
		switch {
		case in.Body != wire.BodyTransactReply || in.Call != dp.call || in.Transact > dp.n:
			return fail(fmt.Errorf("direct channel: a %s frame for poll %d, transaction %d while waiting for transaction %d of poll %d: %w",
				in.Body, in.Call, in.Transact, dp.n, dp.call, wire.ErrDirectFrame))
		case in.Transact < dp.n:
			continue // the late reply to an earlier transaction
		}
		if in.TransactReply == nil {
			return &pb.TransactResponse{}, true, nil
		}
		return in.TransactReply, true, nil
	}
}
