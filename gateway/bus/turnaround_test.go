package bus

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/internal/clock"
)

// The wait before each request is the bus's Turnaround when its config sets
// one (an OSDP line: two character times), and the Modbus RTU t3.5
// otherwise. The line runs on a fake clock, so the test sees the exact
// silence the bus keeps, whatever the machine's load.
func TestWaitsItsTurnaroundBeforeEachRequest(t *testing.T) {
	osdp := 2 * 10 * time.Second / 115200 // two 8N1 characters: 173.6 µs
	cases := []struct {
		name       string
		turnaround time.Duration
		want       time.Duration
	}{
		{"modbus default", 0, 1750 * time.Microsecond},
		{"osdp", osdp, osdp},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reply := []byte{0x01, 0x03, 0x04, 0x00, 0x2a, 0x00, 0x07, 0x00, 0x00}
			b, err := New(Config{Name: "rs485-1", Port: serialport.Config{Name: "mem", Baud: 115200}, Turnaround: c.turnaround},
				Options{
					Logger: slog.New(slog.DiscardHandler),
					Open:   func(serialport.Config) (serialport.Port, error) { return &echoPort{reply: reply}, nil },
				})
			if err != nil {
				t.Fatal(err)
			}
			if got := b.Silence(); got != c.want {
				t.Errorf("Silence() = %v, want %v", got, c.want)
			}
			line := clock.NewFake(time.Unix(1_700_000_000, 0))
			b.lineClock = line
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go b.Run(ctx)
			defer b.Close()
			select {
			case <-b.Ready():
			case <-time.After(10 * time.Second):
				t.Fatal("the port did not open")
			}
			h := b.Device("reader-1")
			req := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xc4, 0x0b}
			fl := func(p []byte) (int, error) {
				if len(p) < 3 {
					return 0, nil
				}
				return 5 + int(p[2]), nil
			}
			// The first request finds a quiet line and waits for nothing.
			if _, err := h.Transact(ctx, req, fl); err != nil {
				t.Fatal(err)
			}
			// Each later one waits exactly the silence after the reply
			// before it: not a nanosecond less.
			for range 2 {
				done := make(chan error, 1)
				go func() { _, err := h.Transact(ctx, req, fl); done <- err }()
				line.BlockUntil(1)
				line.Advance(c.want - time.Nanosecond)
				if n := line.Waiters(); n != 1 {
					t.Fatalf("the request went out %v into a silence of %v", c.want-time.Nanosecond, c.want)
				}
				line.Advance(time.Nanosecond)
				select {
				case err := <-done:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("the request did not go out once the silence of %v had passed", c.want)
				}
			}
			if st := b.Stats(); st.Transactions != 3 {
				t.Errorf("%d transactions, want 3", st.Transactions)
			}
		})
	}
}
