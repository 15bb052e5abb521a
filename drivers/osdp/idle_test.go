package osdp_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/osdp"
	"github.com/luling-edge/luling/drivers/osdp/osdpsim"
)

// PollIdle brings card reads in like Poll, but a reader that stops
// answering costs it one transaction, where Poll resends.
func TestPollIdleSendsOnce(t *testing.T) {
	r := newRig(t, 115200)
	rd := r.reader(t, osdpsim.ReaderConfig{Addr: 1})
	p := r.pd(t, "door-1", osdp.Config{Addr: 1})
	online(t, p)
	p.TakeEvents()
	rd.PresentWiegand26(12, 3456)
	if polled, err := p.PollIdle(ctx); !polled || err != nil {
		t.Fatalf("PollIdle = %v, %v; want a poll", polled, err)
	}
	if ev := p.TakeEvents(); len(ev) != 1 || ev[0].Kind != osdp.EventCard {
		t.Fatalf("events %v, want the card", kinds(ev))
	}
	h := r.bus.Device("door-1")
	rd.SetSilent(true)
	before := h.Stats().Requests
	if polled, err := p.PollIdle(ctx); !polled || !errors.Is(err, drivers.ErrTimeout) {
		t.Fatalf("PollIdle of a silent reader = %v, %v; want a timeout", polled, err)
	}
	if n := h.Stats().Requests - before; n != 1 {
		t.Errorf("PollIdle of a silent reader made %d transactions, want 1", n)
	}
}

// gate is a transport that can hold a transaction until released.
type gate struct {
	line    drivers.Transactor
	hold    bool
	entered chan struct{}
	release chan struct{}
}

func (g *gate) Transact(ctx context.Context, req []byte, fl drivers.FrameLenFunc) ([]byte, error) {
	if g.hold {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.line.Transact(ctx, req, fl)
}

// PollIdle does not wait for a reader that another call is talking to: it
// reports that it did not poll, and the line is not touched.
func TestPollIdleSkipsBusyReader(t *testing.T) {
	line, err := osdpsim.New(osdpsim.Config{Name: "idle", Baud: 115200})
	if err != nil {
		t.Fatal(err)
	}
	rd, err := line.Add(osdpsim.ReaderConfig{Addr: 2})
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{line: line, entered: make(chan struct{}), release: make(chan struct{})}
	p, err := osdp.NewPD(g, osdp.Config{Name: "door-2", Addr: 2, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	online(t, p)
	g.hold = true
	done := make(chan error, 1)
	go func() { done <- p.Poll(ctx) }()
	<-g.entered // the scheduled poll holds the reader
	commands := rd.Counts().Commands
	if polled, err := p.PollIdle(ctx); polled || err != nil {
		t.Errorf("PollIdle of a busy reader = %v, %v; want no poll and no error", polled, err)
	}
	if n := rd.Counts().Commands; n != commands {
		t.Errorf("PollIdle of a busy reader sent %d commands", n-commands)
	}
	g.hold = false
	close(g.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
