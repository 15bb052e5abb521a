package display

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/sdk"
)

// Measurement is the measurement of a display's readings.
const Measurement = "guidance_display"

// Config is the plugin's own settings (the `config` object under the
// device's plugin options).
type Config struct {
	// Address is the display's address 1..254; default the device's unit.
	Address int `json:"address"`
	// MaxCount caps the count the gateway may show (a 3-digit sign: 999).
	// Default 9999.
	MaxCount int `json:"max_count"`
}

// Driver is a guidance display behind the gateway's bus.
type Driver struct {
	now func() time.Time

	mu     sync.Mutex
	cfg    Config
	id     string
	tags   map[string]string
	bus    sdk.Bus
	log    *slog.Logger
	faults int // fault bits at the last poll, -1 before the first
	events []payload.Record
}

var _ sdk.Driver = (*Driver)(nil)

// New returns an unconfigured driver.
func New() *Driver { return &Driver{now: time.Now, faults: -1} }

// Describe says what the driver is.
func (d *Driver) Describe() sdk.Description {
	return sdk.Description{
		Name:        "guidance-display",
		Description: "parking guidance display (framed ASCII over RS-485)",
		Measurement: Measurement,
		Version:     "1.0.0",
		Points: []sdk.Point{
			{Name: "free", Type: payload.TypeInt, Description: "the count the display shows, 0..max_count"},
			{Name: "brightness", Type: payload.TypeInt, Description: "LED brightness 0..15"},
		},
	}
}

// Configure checks the config and keeps the bus.
func (d *Driver) Configure(_ context.Context, env sdk.Env) error {
	cfg := Config{Address: env.Spec.Unit, MaxCount: MaxCount}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	if cfg.Address < 1 || cfg.Address > MaxAddress {
		return fmt.Errorf("config: key \"address\": %d out of range 1..%d: %w", cfg.Address, MaxAddress, sdk.ErrInvalid)
	}
	if cfg.MaxCount < 0 || cfg.MaxCount > MaxCount {
		return fmt.Errorf("config: key \"max_count\": %d out of range 0..%d: %w", cfg.MaxCount, MaxCount, sdk.ErrInvalid)
	}
	if env.Bus == nil {
		return fmt.Errorf("config: a guidance display needs a serial bus: %w", sdk.ErrInvalid)
	}
	tags := map[string]string{"device": env.Spec.ID}
	maps.Copy(tags, env.Spec.Tags)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg, d.id, d.tags, d.bus, d.log = cfg, env.Spec.ID, tags, env.Bus, env.Logger
	return nil
}

// rule finds the end of a reply: it starts with STX and ends with ETX.
var rule = func() sdk.FrameRule {
	r := sdk.Delimited(ETX, MaxFrame)
	r.Start = []byte{STX}
	return r
}()

// transact sends one command and returns the reply's data, checking that
// the reply comes from the display and answers the command.
func (d *Driver) transact(ctx context.Context, cmd byte, data string) (string, error) {
	d.mu.Lock()
	bus, addr := d.bus, d.cfg.Address
	d.mu.Unlock()
	req, err := Append(nil, Frame{Addr: addr, Cmd: cmd, Data: data})
	if err != nil {
		return "", err
	}
	raw, err := bus.Transact(ctx, req, rule)
	if err != nil {
		return "", fmt.Errorf("display %02X: %c: %w", addr, cmd, err)
	}
	f, err := Decode(raw)
	if err != nil {
		return "", fmt.Errorf("display %02X: %c: reply % x: %w", addr, cmd, raw, err)
	}
	if f.Addr != addr {
		return "", fmt.Errorf("display %02X: %c: reply from address %02X: %w", addr, cmd, f.Addr, ErrFrame)
	}
	if f.Cmd == 'N' {
		return "", fmt.Errorf("display %02X: %c: refused with code %s", addr, cmd, f.Data)
	}
	if f.Cmd != cmd+('a'-'A') {
		return "", fmt.Errorf("display %02X: %c: reply command %c, want %c: %w", addr, cmd, f.Cmd, cmd+('a'-'A'), ErrFrame)
	}
	return f.Data, nil
}

// Poll queries the display's status.
func (d *Driver) Poll(ctx context.Context) ([]payload.Record, error) {
	data, err := d.transact(ctx, 'Q', "")
	if err != nil {
		return nil, err
	}
	st, err := ParseStatus(data)
	if err != nil {
		return nil, fmt.Errorf("display %s: %w", d.id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rec := payload.Record{
		Measurement: Measurement,
		Tags:        maps.Clone(d.tags),
		Fields: map[string]payload.Value{
			"blank":      payload.Bool(st.Blank),
			"brightness": payload.Int(int64(st.Brightness)),
			"temp_c":     payload.Float(st.TempC),
			"faults":     payload.Int(int64(st.Faults)),
		},
	}
	if !st.Blank {
		rec.Fields["shown"] = payload.Int(int64(st.Shown))
	}
	d.faultEvents(st.Faults)
	return []payload.Record{rec}, nil
}

// faultEvents raises a fault event for every fault bit that came on
// (active) or went off (cleared). At the first poll, faults already on are
// reported. The caller holds d.mu.
func (d *Driver) faultEvents(bits int) {
	prev := d.faults
	if prev < 0 {
		prev = 0
	}
	d.faults = bits
	now := d.now()
	for _, fc := range FaultCodes {
		was, is := prev&fc.Bit != 0, bits&fc.Bit != 0
		if was == is {
			continue
		}
		state := "cleared"
		if is {
			state = "active"
		}
		tags := maps.Clone(d.tags)
		tags["code"] = fc.Code
		d.events = append(d.events, payload.Record{
			Measurement: "fault",
			Tags:        tags,
			Fields: map[string]payload.Value{
				"state":   payload.String(state),
				"message": payload.String("guidance display " + fc.Code + " " + state),
			},
			Time: now,
		})
		if d.log != nil {
			d.log.Warn("display fault", "code", fc.Code, "state", state)
		}
	}
}

// TakeEvents returns the fault events raised since the last call.
func (d *Driver) TakeEvents() []payload.Record {
	d.mu.Lock()
	defer d.mu.Unlock()
	ev := d.events
	d.events = nil
	return ev
}

// Write sets "free" (the shown count) or "brightness".
func (d *Driver) Write(ctx context.Context, point string, v payload.Value) error {
	if v.Type() != payload.TypeInt {
		return fmt.Errorf("write %s: got a %s, want an int: %w", point, v.Type(), sdk.ErrInvalid)
	}
	n := v.Int()
	d.mu.Lock()
	maxCount := d.cfg.MaxCount
	d.mu.Unlock()
	var cmd byte
	var data string
	switch point {
	case "free":
		if n < 0 || n > int64(maxCount) {
			return fmt.Errorf("write free: %d out of range 0..%d: %w", n, maxCount, sdk.ErrInvalid)
		}
		cmd, data = 'D', fmt.Sprintf("%04d", n)
	case "brightness":
		if n < 0 || n > MaxBright {
			return fmt.Errorf("write brightness: %d out of range 0..%d: %w", n, MaxBright, sdk.ErrInvalid)
		}
		cmd, data = 'B', fmt.Sprintf("%02d", n)
	default:
		return fmt.Errorf("write %q: unknown point (want free or brightness): %w", point, sdk.ErrInvalid)
	}
	echo, err := d.transact(ctx, cmd, data)
	if err != nil {
		return fmt.Errorf("write %s: %w", point, err)
	}
	if echo != data {
		return fmt.Errorf("write %s: display echoed %q, want %q", point, echo, data)
	}
	return nil
}
