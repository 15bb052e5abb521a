// Package displaysim simulates guidance displays on a serial line: it holds
// the device side of a line (a pty master from internal/ptypair in tests
// and the demo) and answers the display protocol's frames byte for byte,
// for one or more display addresses on the same multi-drop line.
package displaysim

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/luling-edge/luling/plugins/examples/guidance-display/display"
)

// Sim is a line of simulated displays.
type Sim struct {
	mu       sync.Mutex
	displays map[int]*display.Status
	requests int
	bad      int
}

// New returns displays at the given addresses, blank, at brightness 8 and
// 21.5 °C.
func New(addrs ...int) *Sim {
	s := &Sim{displays: map[int]*display.Status{}}
	for _, a := range addrs {
		s.displays[a] = &display.Status{Blank: true, Brightness: 8, TempC: 21.5}
	}
	return s
}

// Set replaces a display's state.
func (s *Sim) Set(addr int, st display.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.displays[addr] = &st
}

// Get returns a display's state.
func (s *Sim) Get(addr int) display.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.displays[addr]; d != nil {
		return *d
	}
	return display.Status{}
}

// Counts returns the frames received and those that failed to decode.
func (s *Sim) Counts() (requests, bad int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.bad
}

// Serve answers frames read from rw until reading fails (the line was
// closed); it returns that error.
func (s *Sim) Serve(rw io.ReadWriter) error {
	buf := make([]byte, 0, 2*display.MaxFrame)
	chunk := make([]byte, 64)
	for {
		n, err := rw.Read(chunk)
		if err != nil {
			return err
		}
		buf = append(buf, chunk[:n]...)
		for {
			start := bytes.IndexByte(buf, display.STX)
			if start < 0 {
				buf = buf[:0]
				break
			}
			buf = buf[start:]
			end := bytes.IndexByte(buf, display.ETX)
			if end < 0 {
				if len(buf) > display.MaxFrame {
					buf = buf[:0]
				}
				break
			}
			frame := append([]byte(nil), buf[:end+1]...)
			buf = buf[end+1:]
			if reply := s.Handle(frame); reply != nil {
				if _, err := rw.Write(reply); err != nil {
					return err
				}
			}
		}
	}
}

// Handle answers one request frame; nil means no reply (another address,
// a broadcast, or a frame too broken to know who it was for).
func (s *Sim) Handle(req []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	f, err := display.Decode(req)
	if err != nil {
		s.bad++
		// A display that recognizes its address still says the checksum
		// was wrong.
		if len(req) >= 3 {
			var addr int
			if _, e := fmt.Sscanf(string(req[1:3]), "%02X", &addr); e == nil && s.displays[addr] != nil {
				return reply(addr, 'N', "01")
			}
		}
		return nil
	}
	if f.Addr == display.Broadcast {
		for _, d := range s.displays {
			apply(d, f)
		}
		return nil
	}
	d := s.displays[f.Addr]
	if d == nil {
		return nil
	}
	switch f.Cmd {
	case 'Q':
		if f.Data != "" {
			return reply(f.Addr, 'N', "03")
		}
		return reply(f.Addr, 'q', display.FormatStatus(*d))
	case 'D', 'B':
		if !apply(d, f) {
			return reply(f.Addr, 'N', "03")
		}
		return reply(f.Addr, f.Cmd+('a'-'A'), f.Data)
	}
	return reply(f.Addr, 'N', "02")
}

// apply carries out a D or B command; it reports whether the data was valid.
func apply(d *display.Status, f display.Frame) bool {
	var n int
	switch f.Cmd {
	case 'D':
		if len(f.Data) != 4 || !scan(f.Data, &n) {
			return false
		}
		d.Blank, d.Shown = false, n
		return true
	case 'B':
		if len(f.Data) != 2 || !scan(f.Data, &n) || n > display.MaxBright {
			return false
		}
		d.Brightness = n
		return true
	}
	return false
}

func scan(s string, n *int) bool {
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		v = v*10 + int(s[i]-'0')
	}
	*n = v
	return true
}

func reply(addr int, cmd byte, data string) []byte {
	b, err := display.Append(nil, display.Frame{Addr: addr, Cmd: cmd, Data: data})
	if err != nil {
		return nil // unreachable: the simulator builds valid frames only
	}
	return b
}
