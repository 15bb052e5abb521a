package bus

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/internal/testenv"
)

// The wait before each request is the bus's Turnaround when its config sets
// one (an OSDP line: two character times), and the Modbus RTU t3.5
// otherwise. The line's clock is frozen and the wait only recorded, so the
// test sees the exact silence the bus asked for, whatever the machine's
// load.
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
			frozen := time.Unix(1_700_000_000, 0)
			b.now = func() time.Time { return frozen }
			var waits []time.Duration
			b.pause = func(_ context.Context, until time.Time) error {
				waits = append(waits, until.Sub(frozen))
				return nil
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go b.Run(ctx)
			defer b.Close()
			testenv.WaitFor(t, 10*time.Second, "the port to open", func() bool { return b.Stats().State == StateOpen })
			h := b.Device("reader-1")
			req := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xc4, 0x0b}
			fl := func(p []byte) (int, error) {
				if len(p) < 3 {
					return 0, nil
				}
				return 5 + int(p[2]), nil
			}
			for range 3 {
				if _, err := h.Transact(ctx, req, fl); err != nil {
					t.Fatal(err)
				}
			}
			// The first request finds a quiet line; each later one waits
			// the silence after the reply before it.
			if len(waits) != 2 || waits[0] != c.want || waits[1] != c.want {
				t.Errorf("waits before requests %v, want [%v %v]", waits, c.want, c.want)
			}
		})
	}
}
