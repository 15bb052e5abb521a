package simgpio

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio/vpin"
)

// ErrNotServed means the simulator does not serve the line.
var ErrNotServed = errors.New("line not served by the GPIO simulator")

// ErrNotConnected means the simulator is not connected (not started yet, or
// restarting).
var ErrNotConnected = errors.New("GPIO simulator not connected")

// ClientOptions configure a Client.
type ClientOptions struct {
	Logger *slog.Logger
	// Wait is how long Open waits for the simulator when it is not
	// connected yet (default 10 s).
	Wait time.Duration
}

// Client is the gateway's end of the link: it opens lines of the
// simulator at one socket and keeps them in step.
type Client struct {
	path string
	log  *slog.Logger
	wait time.Duration

	stop context.CancelFunc
	done chan struct{}

	mu      sync.Mutex
	conn    net.Conn
	up      chan struct{}         // closed while connected; replaced on disconnect
	served  map[string]gpio.Level // the simulator's lines, from hello and level
	pins    map[string]*Pin       // opened lines
	lastErr error                 // why the last attempt failed
}

// Dial starts connecting to the simulator at path (a unix socket) and keeps
// the link up until Close; it does not wait.
func Dial(path string, o ClientOptions) *Client {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Wait <= 0 {
		o.Wait = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{path: path, log: o.Logger.With("gpio_simulator", path), wait: o.Wait, stop: cancel,
		done: make(chan struct{}), up: make(chan struct{}), pins: map[string]*Pin{}, lastErr: ErrNotConnected}
	go func() { defer close(c.done); c.run(ctx) }()
	return c
}

// Path is the simulator's socket.
func (c *Client) Path() string { return c.path }

// Open opens a line the simulator serves, by the name the config gives it
// (gpiochip0:17, GPIO17, or any name the simulator uses). It waits up to
// ClientOptions.Wait for the simulator. Opening a line twice gives the same
// pin.
func (c *Client) Open(name string) (gpio.PinIO, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("simgpio: %v", err)
	}
	c.mu.Lock()
	up := c.up
	c.mu.Unlock()
	t := time.NewTimer(c.wait)
	defer t.Stop()
	select {
	case <-up:
	case <-t.C:
		c.mu.Lock()
		err := c.lastErr
		c.mu.Unlock()
		return nil, fmt.Errorf("simgpio: line %q: no GPIO simulator at %s after %v: %v (start the simulator, e.g. devsim gpio -config FILE, or remove gpio.simulator on a board)", name, c.path, c.wait, err)
	case <-c.done:
		return nil, fmt.Errorf("simgpio: line %q: client closed", name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pins[name]; p != nil {
		return p, nil
	}
	level, ok := c.served[name]
	if !ok {
		names := make([]string, 0, len(c.served))
		for n := range c.served {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("simgpio: line %q: the simulator at %s serves %s: %w", name, c.path, strings.Join(names, ", "), ErrNotServed)
	}
	num := -1
	if _, line, ok := strings.Cut(name, ":"); ok {
		if n, err := strconv.Atoi(line); err == nil {
			num = n
		}
	}
	p := &Pin{Pin: vpin.New(name, num, nil), c: c}
	p.Pin.KeepHistory(16)
	p.Pin.DriveAt(level, time.Time{})
	c.pins[name] = p
	return p, nil
}

// Close ends the link. Pins stay readable and stop queuing edges.
func (c *Client) Close() error {
	c.stop()
	c.mu.Lock()
	if c.conn != nil {
		c.conn.Close()
	}
	pins := make([]*Pin, 0, len(c.pins))
	for _, p := range c.pins {
		pins = append(pins, p)
	}
	c.mu.Unlock()
	// A reader blocked on a full edge queue (nobody waits for edges any
	// more) is released: In empties the queue and stops queuing.
	for _, p := range pins {
		_ = p.Pin.In(gpio.PullNoChange, gpio.NoEdge)
	}
	<-c.done
	return nil
}

// run connects, serves the link and reconnects until ctx ends.
func (c *Client) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	wasUp := false
	for ctx.Err() == nil {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		c.lastErr = err
		if c.conn != nil {
			c.conn = nil
			c.up = make(chan struct{})
			wasUp = true
		}
		c.mu.Unlock()
		if wasUp {
			c.log.Warn("GPIO simulator link lost; reconnecting", "err", err)
			wasUp = false
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// session is one connection: hello, resync, then level messages.
func (c *Client) session(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), MaxMessage)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	hello, err := c.next(sc)
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if hello.Op != OpHello {
		return fmt.Errorf("%w: first message is %s: want hello", ErrMessage, hello.Op)
	}
	_ = conn.SetReadDeadline(time.Time{})
	c.attach(conn, hello)
	for {
		m, err := c.next(sc)
		if err != nil {
			return err
		}
		if m.Op != OpLevel {
			return fmt.Errorf("%w: %s after hello: want level", ErrMessage, m.Op)
		}
		c.mu.Lock()
		if _, ok := c.served[m.Line]; ok {
			c.served[m.Line] = m.Level.GPIO()
		}
		p := c.pins[m.Line]
		c.mu.Unlock()
		if p != nil {
			p.Pin.DriveAt(m.Level.GPIO(), m.Time())
		}
	}
}

func (c *Client) next(sc *bufio.Scanner) (Message, error) {
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return Message{}, err
		}
		return Message{}, errors.New("simulator closed the link")
	}
	return Decode(sc.Bytes())
}

// attach makes conn the link: it takes the simulator's levels (a change
// while the link was down becomes an edge) and writes the outputs again.
func (c *Client) attach(conn net.Conn, hello Message) {
	type change struct {
		p     *Pin
		level gpio.Level
	}
	var changed []change
	c.mu.Lock()
	defer func() {
		c.mu.Unlock()
		now := time.Now()
		for _, ch := range changed { // outside c.mu: an edge queue may be full
			ch.p.Pin.DriveAt(ch.level, now)
		}
	}()
	c.served = map[string]gpio.Level{}
	for _, l := range hello.Lines {
		c.served[l.Line] = l.Level.GPIO()
	}
	c.conn = conn
	now := time.Now()
	for name, p := range c.pins {
		level, ok := c.served[name]
		if !ok {
			c.log.Error("GPIO simulator no longer serves an open line", "line", name)
			continue
		}
		if p.wrote {
			if err := c.writeLocked(Message{Op: OpOut, Line: name, Level: LevelOf(p.Pin.Read()), T: now.UnixNano()}); err != nil {
				c.log.Error("GPIO simulator: write output again", "line", name, "err", err)
			}
		} else if p.Pin.Read() != level {
			changed = append(changed, change{p, level})
		}
	}
	close(c.up)
	c.log.Warn("GPIO IS SIMULATED: connected to the GPIO simulator; no real line is used", "lines", len(c.served))
}

// writeLocked sends m; c.mu is held.
func (c *Client) writeLocked(m Message) error {
	if c.conn == nil {
		return ErrNotConnected
	}
	b, err := Encode(m)
	if err != nil {
		return err
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		c.conn.Close() // the session notices and reconnects
		return err
	}
	return nil
}

// Pin is a line of the simulator: a virtual pin whose inputs follow the
// simulator and whose outputs are sent to it.
type Pin struct {
	*vpin.Pin
	c     *Client
	wrote bool // Out was called: the level is the gateway's (c.mu)
}

var _ gpio.PinIO = (*Pin)(nil)

// Out sets the line and sends the level to the simulator. When the
// simulator is not connected it returns an error wrapping ErrNotConnected;
// the level is kept and sent when the link is back.
func (p *Pin) Out(l gpio.Level) error {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	p.wrote = true
	_ = p.Pin.Out(l)
	if err := p.c.writeLocked(Message{Op: OpOut, Line: p.Name(), Level: LevelOf(l), T: time.Now().UnixNano()}); err != nil {
		return fmt.Errorf("simgpio: line %s: set %s: %w (the level goes out when the link is back)", p.Name(), LevelOf(l), err)
	}
	return nil
}
