package display_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/gateway/bus"
	"github.com/luling-edge/luling/gateway/serialport"
	"github.com/luling-edge/luling/internal/ptypair"
	"github.com/luling-edge/luling/payload"
	"github.com/luling-edge/luling/plugins/examples/guidance-display/display"
	"github.com/luling-edge/luling/plugins/examples/guidance-display/display/displaysim"
	"github.com/luling-edge/luling/plugins/host"
	"github.com/luling-edge/luling/plugins/sdk/plugintest"
)

func field(t *testing.T, r payload.Record, name string) payload.Value {
	t.Helper()
	v, ok := r.Fields[name]
	if !ok {
		t.Fatalf("record %s has no field %q: %v", r.Measurement, name, r.Fields)
	}
	return v
}

// The driver, in-process behind the real gRPC protocol, against the
// simulator as a function bus.
func TestDriverInProcess(t *testing.T) {
	sim := displaysim.New(3, 4)
	sim.Set(3, display.Status{Shown: 17, Brightness: 9, TempC: 31.5})
	p := plugintest.Start(t, display.New(), plugintest.Options{
		Name:   "sign-north",
		Bus:    plugintest.BusFunc(sim.Handle),
		Config: map[string]any{"address": 3, "max_count": 999},
		Spec:   drivers.Spec{Tags: map[string]string{"lot": "p1"}},
	})
	ctx := context.Background()
	recs, err := p.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Measurement != display.Measurement {
		t.Fatalf("records %+v", recs)
	}
	r := recs[0]
	if r.Tags["device"] != "sign-north" || r.Tags["lot"] != "p1" {
		t.Errorf("tags %v", r.Tags)
	}
	if field(t, r, "shown").Int() != 17 || field(t, r, "brightness").Int() != 9 || field(t, r, "temp_c").Float() != 31.5 || field(t, r, "blank").Bool() {
		t.Errorf("fields %v", r.Fields)
	}
	if err := p.Write(ctx, "free", payload.Int(123)); err != nil {
		t.Fatal(err)
	}
	if err := p.Write(ctx, "brightness", payload.Int(2)); err != nil {
		t.Fatal(err)
	}
	if st := sim.Get(3); st.Shown != 123 || st.Brightness != 2 || st.Blank {
		t.Errorf("display 3 = %+v after writes", st)
	}
	if st := sim.Get(4); !st.Blank {
		t.Errorf("display 4 changed: %+v", st)
	}
	for _, c := range []struct {
		point string
		v     payload.Value
		want  string
	}{
		{"free", payload.Int(1000), "1000 out of range 0..999"},
		{"free", payload.String("12"), "want an int"},
		{"colour", payload.Int(1), `unknown point`},
	} {
		err := p.Write(ctx, c.point, c.v)
		if err == nil || !errors.Is(err, host.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Write(%s, %v) = %v, want ErrInvalid containing %q", c.point, c.v, err, c.want)
		}
	}
	d, err := p.Describe(ctx)
	if err != nil || d.Name != "guidance-display" || len(d.Points) != 2 || d.Points[0].Type != payload.TypeInt {
		t.Errorf("Describe = %+v, %v", d, err)
	}
}

func TestFaultEvents(t *testing.T) {
	sim := displaysim.New(1)
	sim.Set(1, display.Status{Shown: 5, Brightness: 8, TempC: 20, Faults: display.FaultLED})
	p := plugintest.Start(t, display.New(), plugintest.Options{Bus: plugintest.BusFunc(sim.Handle), Config: map[string]any{"address": 1}})
	ctx := context.Background()
	if _, err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	ev := p.TakeEvents()
	if len(ev) != 1 || ev[0].Measurement != "fault" || ev[0].Tags["code"] != "led_module" || ev[0].Fields["state"].Str() != "active" || ev[0].Time.IsZero() {
		t.Fatalf("events after the first poll: %+v", ev)
	}
	if ev := p.TakeEvents(); len(ev) != 0 {
		t.Fatalf("events taken twice: %+v", ev)
	}
	sim.Set(1, display.Status{Shown: 5, Brightness: 8, TempC: 80, Faults: display.FaultOverTemp})
	if _, err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range p.TakeEvents() {
		got[e.Tags["code"]] = e.Fields["state"].Str()
	}
	if len(got) != 2 || got["led_module"] != "cleared" || got["over_temp"] != "active" {
		t.Fatalf("events after the change: %v", got)
	}
	if _, err := p.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := p.TakeEvents(); len(ev) != 0 {
		t.Fatalf("events while nothing changed: %+v", ev)
	}
}

func TestConfigErrors(t *testing.T) {
	sim := displaysim.New(1)
	for _, c := range []struct {
		cfg  map[string]any
		want string
	}{
		{map[string]any{"adress": 1}, `unknown key "adress"`},
		{map[string]any{"address": "1"}, `key "address": got a JSON string, want int`},
		{map[string]any{"address": 300}, `key "address": 300 out of range`},
		{map[string]any{}, `key "address": 0 out of range`},
	} {
		p := plugintest.Start(t, display.New(), plugintest.Options{Bus: plugintest.BusFunc(sim.Handle), Config: c.cfg})
		_, err := p.Poll(context.Background())
		if err == nil || !errors.Is(err, host.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %v: Poll = %v, want ErrInvalid containing %q", c.cfg, err, c.want)
		}
		if st := p.Stats(); st.State != host.Disabled {
			t.Errorf("config %v: state %s, want disabled", c.cfg, st.State)
		}
	}
}

// Replies that are wrong on the wire: the driver says what and where.
func TestBadReplies(t *testing.T) {
	cases := []struct {
		reply func(req []byte) []byte
		want  string
	}{
		{func([]byte) []byte { return nil }, "incomplete"},
		{func([]byte) []byte { return []byte("\x0201q0001,07,+245,00FF\x03") }, "checksum"},
		{func([]byte) []byte {
			b, _ := display.Append(nil, display.Frame{Addr: 2, Cmd: 'q', Data: "0001,07,+245,00"})
			return b
		}, "reply from address 02"},
		{func([]byte) []byte {
			b, _ := display.Append(nil, display.Frame{Addr: 1, Cmd: 'q', Data: "0001,07"})
			return b
		}, "2 fields"},
		{func([]byte) []byte {
			b, _ := display.Append(nil, display.Frame{Addr: 1, Cmd: 'N', Data: "02"})
			return b
		}, "refused with code 02"},
		{func([]byte) []byte { return []byte("x01q\x03") }, "does not match the frame rule"},
	}
	for _, c := range cases {
		p := plugintest.Start(t, display.New(), plugintest.Options{Bus: plugintest.BusFunc(c.reply), Config: map[string]any{"address": 1}})
		_, err := p.Poll(context.Background())
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Poll = %v, want an error containing %q", err, c.want)
		}
	}
}

// The built plugin program, started by the host, reaches a simulated
// display on a pseudo-terminal through the gateway's bus arbiter.
func TestBinaryOverPTY(t *testing.T) {
	path, sum := plugintest.Build(t, "github.com/luling-edge/luling/plugins/examples/guidance-display")
	pair, err := ptypair.Open("")
	if err != nil {
		t.Fatal(err)
	}
	sim := displaysim.New(1, 2)
	sim.Set(2, display.Status{Shown: 250, Brightness: 12, TempC: 18})
	served := make(chan error, 1)
	go func() { served <- sim.Serve(pair.Master) }()
	b, err := bus.New(bus.Config{Name: "rs485-1", Port: serialport.Config{Name: pair.Path(), Baud: 9600}, Timeout: time.Second},
		bus.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ran
		pair.Close()
		<-served
	})
	select {
	case <-b.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("bus did not open")
	}
	p := plugintest.StartBinary(t, path, sum, plugintest.Options{
		Name: "sign-2", Bus: b.Device("sign-2"), Config: map[string]any{"address": 2},
	})
	recs, err := p.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || field(t, recs[0], "shown").Int() != 250 || field(t, recs[0], "brightness").Int() != 12 {
		t.Fatalf("records %+v", recs)
	}
	if err := p.Write(ctx, "free", payload.Int(249)); err != nil {
		t.Fatal(err)
	}
	if st := sim.Get(2); st.Shown != 249 {
		t.Fatalf("display shows %d, want 249", st.Shown)
	}
	st := p.Stats()
	if st.PID == 0 || st.Version != 2 || st.Transactions != 2 || st.State != host.Running {
		t.Errorf("stats %+v", st)
	}
	if bs := b.Stats(); bs.Transactions != 2 {
		t.Errorf("bus counted %d transactions, want 2", bs.Transactions)
	}
	if n, bad := sim.Counts(); n != 2 || bad != 0 {
		t.Errorf("simulator saw %d frames, %d bad", n, bad)
	}
}

// Polls, writes and event takes from several goroutines at once, as the
// gateway's poll loop and command handler do.
func TestConcurrentCalls(t *testing.T) {
	sim := displaysim.New(1)
	var mu sync.Mutex
	p := plugintest.Start(t, display.New(), plugintest.Options{
		Bus: plugintest.BusFunc(func(req []byte) []byte {
			mu.Lock() // one transaction at a time, as on a real line
			defer mu.Unlock()
			return sim.Handle(req)
		}),
		Config: map[string]any{"address": 1},
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if g%2 == 0 {
					if _, err := p.Poll(ctx); err != nil {
						errs <- err
					}
					p.TakeEvents()
				} else if err := p.Write(ctx, "free", payload.Int(int64(g*100+i))); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n, bad := sim.Counts(); n != 80 || bad != 0 {
		t.Errorf("simulator saw %d frames (%d bad), want 80", n, bad)
	}
}
