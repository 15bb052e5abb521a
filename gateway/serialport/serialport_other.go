//go:build !linux

package serialport

import (
	"fmt"
	"io"
	"time"

	"github.com/tarm/serial"
)

// openLine opens the line through tarm/serial with ReadTimeout.
func openLine(cfg Config) (Port, error) {
	tc := &serial.Config{
		Name:        cfg.Name,
		Baud:        cfg.Baud,
		ReadTimeout: ReadTimeout,
		Size:        byte(cfg.DataBits),
		Parity:      serial.ParityNone,
		StopBits:    serial.Stop1,
	}
	switch cfg.Parity {
	case ParityEven:
		tc.Parity = serial.ParityEven
	case ParityOdd:
		tc.Parity = serial.ParityOdd
	}
	if cfg.StopBits == 2 {
		tc.StopBits = serial.Stop2
	}
	p, err := serial.OpenPort(tc)
	if err != nil {
		return nil, fmt.Errorf("serialport: open %s: %w", cfg.Name, err)
	}
	return &port{p: p, name: cfg.Name}, nil
}

// port adapts *serial.Port and names the line in its errors.
type port struct {
	p    *serial.Port
	name string
}

func (p *port) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	start := time.Now()
	n, err := p.p.Read(b)
	switch {
	case err == io.EOF && n == 0:
		// A timed-out read takes ReadTimeout; one that comes back empty
		// at once found the line hung up.
		return hungUp(p.name, start)
	case err != nil && err != io.EOF:
		return n, fmt.Errorf("serialport: read %s: %w", p.name, err)
	}
	return n, err
}

func (p *port) Write(b []byte) (int, error) {
	n, err := p.p.Write(b)
	if err != nil {
		err = fmt.Errorf("serialport: write %s: %w", p.name, err)
	}
	return n, err
}

func (p *port) Flush() error {
	if err := p.p.Flush(); err != nil {
		return fmt.Errorf("serialport: flush %s: %w", p.name, err)
	}
	return nil
}

func (p *port) Close() error {
	if err := p.p.Close(); err != nil {
		return fmt.Errorf("serialport: close %s: %w", p.name, err)
	}
	return nil
}
