package modbus_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/ptypair"
	"github.com/luling-edge/luling/payload"
)

// ptyBus is a minimal transport for this test: it writes a request to the
// slave side of a pty and reads the reply until the driver's frame-length
// function says it is complete. (The gateway's bus arbiter does the same
// with line timing and scheduling on top.)
type ptyBus struct {
	mu sync.Mutex
	f  *os.File
}

func (p *ptyBus) Transact(ctx context.Context, req []byte, frameLen drivers.FrameLenFunc) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.f.Write(req); err != nil {
		return nil, err
	}
	if frameLen == nil {
		return nil, nil
	}
	deadline := time.Now().Add(2 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := p.f.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, 256)
	tmp := make([]byte, 256)
	for {
		n, err := p.f.Read(tmp)
		buf = append(buf, tmp[:n]...)
		if want, ferr := frameLen(buf); ferr != nil {
			return nil, ferr
		} else if want > 0 && len(buf) >= want {
			return buf[:want], nil
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, drivers.ErrTimeout
			}
			return nil, err
		}
	}
}

// TestAgainstSimulator runs the driver against the parking-sensor
// simulator over a pseudo-terminal: real frames, the simulator's own
// register maps.
func TestAgainstSimulator(t *testing.T) {
	pair, err := ptypair.Open("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	srv, err := modbussim.NewServer(modbussim.Config{Name: "rs485-test", Line: modbussim.Line{Baud: 115200}})
	if err != nil {
		t.Fatal(err)
	}
	us, err := modbussim.NewSensor(srv, 17, modbussim.Ultrasonic, 1)
	if err != nil {
		t.Fatal(err)
	}
	geo, err := modbussim.NewSensor(srv, 18, modbussim.Geomagnetic, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, pair.Master) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("simulator: %v", err)
		}
	})
	f, err := os.OpenFile(pair.Path(), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	bus := &ptyBus{f: f}

	info, _ := drivers.Lookup("modbus")
	newDev := func(id string, unit int, profile string) *modbus.Device {
		d, err := info.New(drivers.Spec{ID: id, Unit: unit, Profile: profile, Tags: map[string]string{"bay": id}}, drivers.Env{Bus: bus})
		if err != nil {
			t.Fatal(err)
		}
		return d.(*modbus.Device)
	}
	ultra, mag := newDev("bay-17", 17, "ultrasonic-bay"), newDev("bay-18", 18, "geomagnetic-bay")

	poll := func(d *modbus.Device) payload.Record {
		t.Helper()
		recs, err := d.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := payload.CheckSchema(&recs[0]); err != nil {
			t.Fatal(err)
		}
		return recs[0]
	}

	// Free bay, then a car.
	r := poll(ultra)
	if r.Fields["occupied"] != payload.Bool(false) || r.Fields["sensor_fault"] != payload.Bool(false) {
		t.Errorf("free bay: %v", r.Fields)
	}
	if d := r.Fields["distance_cm"].Float(); d < 240 || d > 260 {
		t.Errorf("free bay distance %v", d)
	}
	us.SetOccupied(true)
	r = poll(ultra)
	if r.Fields["occupied"] != payload.Bool(true) {
		t.Errorf("occupied bay: %v", r.Fields)
	}
	if d := r.Fields["distance_cm"].Float(); d < 95 || d > 155 {
		t.Errorf("occupied bay distance %v", d)
	}
	// A fault: no echo, so no distance.
	us.SetFault(true)
	r = poll(ultra)
	if _, ok := r.Fields["distance_cm"]; ok || r.Fields["sensor_fault"] != payload.Bool(true) {
		t.Errorf("faulty sensor: %v", r.Fields)
	}
	us.SetFault(false)

	// Write-back of the LED and the threshold.
	if err := ultra.Write(ctx, "led", payload.String("red")); err != nil {
		t.Fatal(err)
	}
	if us.LED() != modbussim.LEDRed {
		t.Errorf("LED = %d, want red", us.LED())
	}
	if err := ultra.Write(ctx, "threshold_cm", payload.Float(140)); err != nil {
		t.Fatal(err)
	}
	all, err := ultra.ReadAll(ctx)
	if err != nil || all["led"] != payload.String("red") || all["threshold_cm"] != payload.Float(140) || all["unit_address"] != payload.Int(17) {
		t.Errorf("ReadAll: %v, %v", all, err)
	}

	// Geomagnetic: free, occupied, failed.
	r = poll(mag)
	if r.Fields["occupied"] != payload.Bool(false) || r.Fields["sensor_fault"] != payload.Bool(false) || r.Fields["battery_v"].Float() < 3 {
		t.Errorf("geomagnetic free: %v", r.Fields)
	}
	geo.SetOccupied(true)
	if r = poll(mag); r.Fields["occupied"] != payload.Bool(true) {
		t.Errorf("geomagnetic occupied: %v", r.Fields)
	}
	geo.SetFault(true)
	r = poll(mag)
	if _, ok := r.Fields["occupied"]; ok || r.Fields["sensor_fault"] != payload.Bool(true) {
		t.Errorf("geomagnetic failed: %v", r.Fields)
	}

	// Line faults reach the caller as the sentinels.
	us.Unit().CorruptNext(1)
	if _, err := ultra.Poll(ctx); !errors.Is(err, modbus.ErrCRC) {
		t.Errorf("corrupt reply: %v", err)
	}
	if _, err := ultra.Poll(ctx); err != nil {
		t.Errorf("poll after a corrupt reply: %v", err)
	}
	geo.Unit().SetOffline(true)
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := mag.Poll(short); !errors.Is(err, drivers.ErrTimeout) {
		t.Errorf("offline unit: %v", err)
	}
	// A write the device refuses comes back as its exception.
	if err := modbus.NewClient(bus, 17, "bay-17").WriteSingleRegister(ctx, 5, 3); !errors.Is(err, modbus.ErrIllegalDataAddress) && !errors.Is(err, modbus.ErrIllegalDataValue) {
		t.Errorf("write to the read-only address register: %v", err)
	}
}
