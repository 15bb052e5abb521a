package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/serialport"
)

// openBus opens the serial line through the gateway's bus arbiter (the
// code path gatewayd uses) and waits until the port is open. stop closes
// it. The error names the OS's reason when the port does not open (no such
// file, permission denied, busy).
func openBus(ctx context.Context, pc serialport.Config, timeout time.Duration) (b *bus.Bus, stop func(), err error) {
	// The bus reopens a port that fails; the first open error is the
	// OS's reason.
	openErr := make(chan error, 1)
	open := func(c serialport.Config) (serialport.Port, error) {
		p, err := serialport.Open(c)
		if err != nil {
			select {
			case openErr <- err:
			default:
			}
		}
		return p, err
	}
	b, err = bus.New(bus.Config{Name: pc.Name, Port: pc, Timeout: timeout, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond},
		bus.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Open: open})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); b.Run(ctx) }()
	stop = func() { cancel(); wg.Wait() }
	select {
	case <-b.Ready():
		return b, stop, nil
	case err := <-openErr:
		stop()
		return nil, nil, unwrapOpenError(err)
	case <-time.After(3 * time.Second):
		stop()
		return nil, nil, fmt.Errorf("cannot open %s: %s", pc.Name, b.Stats().State)
	}
}
