package simgpio

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio/vpin"
)

// Server is the simulator's end of the link: it serves named lines to the
// gateways that connect (usually one; two while a gateway reloads).
type Server struct {
	log   *slog.Logger
	onOut func(line string, l gpio.Level, t time.Time)

	mu    sync.Mutex
	names []string
	lines map[string]*srvLine
	conns map[net.Conn]bool
}

type srvLine struct {
	level gpio.Level
	outs  []vpin.Change // what the gateway wrote, oldest first (bounded)
}

// maxOuts bounds the output history kept per line.
const maxOuts = 1024

// ServerOptions configure a Server.
type ServerOptions struct {
	Logger *slog.Logger
	// OnOut is told every level a gateway writes (after it is recorded);
	// it runs on the connection's goroutine.
	OnOut func(line string, l gpio.Level, t time.Time)
}

// NewServer serves the named lines, all high at first (idle, pulled up).
func NewServer(lines []string, o ServerOptions) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: o.Logger, onOut: o.OnOut, lines: map[string]*srvLine{}, conns: map[net.Conn]bool{}}
	for _, n := range lines {
		if err := checkName(n); err != nil {
			return nil, fmt.Errorf("simgpio: %v", err)
		}
		if s.lines[n] != nil {
			return nil, fmt.Errorf("simgpio: line %q twice", n)
		}
		s.lines[n] = &srvLine{level: gpio.High}
		s.names = append(s.names, n)
	}
	return s, nil
}

// Listen opens the unix socket at path, replacing a stale one left by a
// simulator that did not stop cleanly.
func Listen(path string) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("simgpio: %s: another simulator is serving it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("simgpio: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("simgpio: %w", err)
	}
	return ln, nil
}

// Serve accepts gateways on ln until ctx ends, then closes ln and every
// connection.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("simgpio: accept: %w", err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); s.serveConn(conn) }()
	}
}

func (s *Server) serveConn(conn net.Conn) {
	defer conn.Close()
	s.mu.Lock()
	hello := Message{Op: OpHello, V: Version, Lines: []LineInfo{}}
	for _, n := range s.names {
		hello.Lines = append(hello.Lines, LineInfo{Line: n, Level: LevelOf(s.lines[n].level)})
	}
	err := s.sendLocked(conn, hello)
	if err == nil {
		s.conns[conn] = true
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("gpio simulator: hello failed", "err", err)
		return
	}
	s.log.Info("gpio simulator: gateway connected")
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		s.log.Info("gpio simulator: gateway disconnected")
	}()
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), MaxMessage)
	for sc.Scan() {
		m, err := Decode(sc.Bytes())
		if err == nil && m.Op != OpOut {
			err = fmt.Errorf("%w: %s from a gateway: want out", ErrMessage, m.Op)
		}
		if err != nil {
			s.log.Warn("gpio simulator: dropping the gateway's link", "err", err)
			return
		}
		s.mu.Lock()
		l := s.lines[m.Line]
		if l != nil {
			l.level = m.Level.GPIO()
			l.outs = append(l.outs, vpin.Change{Level: m.Level.GPIO(), Time: m.Time()})
			if len(l.outs) > maxOuts {
				l.outs = append(l.outs[:0], l.outs[len(l.outs)-maxOuts/2:]...)
			}
		}
		s.mu.Unlock()
		if l == nil {
			s.log.Warn("gpio simulator: the gateway wrote a line that is not served", "line", m.Line)
			continue
		}
		if s.onOut != nil {
			s.onOut(m.Line, m.Level.GPIO(), m.Time())
		}
	}
}

// sendLocked writes m to conn; s.mu is held, so every gateway gets the
// changes in order. A gateway that does not read for 2 s is dropped (it
// reconnects and takes the levels again).
func (s *Server) sendLocked(conn net.Conn, m Message) error {
	b, err := Encode(m)
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(b); err != nil {
		conn.Close()
		delete(s.conns, conn)
		return err
	}
	return nil
}

// Drive sets an input line's level, as the wiring would, and tells the
// connected gateways with the time of the change.
func (s *Server) Drive(line string, l gpio.Level) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.lines[line]
	if sl == nil {
		return fmt.Errorf("simgpio: drive line %q: not served (lines: %v)", line, s.names)
	}
	if sl.level == l {
		return nil
	}
	sl.level = l
	m := Message{Op: OpLevel, Line: line, Level: LevelOf(l), T: time.Now().UnixNano()}
	for c := range s.conns {
		if err := s.sendLocked(c, m); err != nil {
			s.log.Warn("gpio simulator: gateway not reading; dropped its link", "err", err)
		}
	}
	return nil
}

// Level is a line's level: driven by the simulator or written by a gateway.
func (s *Server) Level(line string) (gpio.Level, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl := s.lines[line]; sl != nil {
		return sl.level, nil
	}
	return gpio.Low, fmt.Errorf("simgpio: line %q: not served", line)
}

// Outputs returns the levels gateways wrote to line, oldest first (the
// last ~1000).
func (s *Server) Outputs(line string) []vpin.Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl := s.lines[line]; sl != nil {
		return slices.Clone(sl.outs)
	}
	return nil
}

// Connected is the number of gateways connected.
func (s *Server) Connected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
