package modbus

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/payload"
)

func newTestDevice(t *testing.T, b *bank, profile string, profilesDir string, log *slog.Logger) *Device {
	t.Helper()
	info, ok := drivers.Lookup(DriverName)
	if !ok {
		t.Fatal("driver modbus is not registered")
	}
	dev, err := info.New(drivers.Spec{
		ID: "bay-17", Driver: DriverName, Bus: "rs485-1", Unit: int(b.unit), Profile: profile,
		Tags: map[string]string{"lot": "north", "bay": "17"},
	}, drivers.Env{Bus: b, Logger: log, ProfilesDir: profilesDir})
	if err != nil {
		t.Fatal(err)
	}
	return dev.(*Device)
}

func TestDevicePollUltrasonic(t *testing.T) {
	ctx := context.Background()
	b := newBank(17, 6)
	copy(b.holding, []uint16{0x0001, 87, 1, 150, 231, 17})
	d := newTestDevice(t, b, "ultrasonic-bay", "", nil)
	if d.Measurement() != "parking_bay" {
		t.Fatalf("measurement %q", d.Measurement())
	}
	recs, err := d.Poll(ctx)
	if err != nil || len(recs) != 1 {
		t.Fatalf("poll: %v, %v", recs, err)
	}
	r := recs[0]
	if r.Measurement != "parking_bay" || !r.Time.IsZero() {
		t.Errorf("record %+v", r)
	}
	if len(r.Tags) != 3 || r.Tags["device"] != "bay-17" || r.Tags["lot"] != "north" || r.Tags["bay"] != "17" {
		t.Errorf("tags %v", r.Tags)
	}
	checkFields(t, r.Fields, map[string]payload.Value{
		"occupied": payload.Bool(true), "sensor_fault": payload.Bool(false), "distance_cm": payload.Float(87), "temp_c": payload.Float(23.1),
	})
	if err := payload.CheckSchema(&r); err != nil {
		t.Error(err)
	}
	if want := AppendCRC(hx(t, "11 03 00 00 00 06")); len(b.requests) != 1 || !bytes.Equal(b.requests[0], want) {
		t.Errorf("requests % X, want one read % X", b.requests, want)
	}
	// Each poll has fields of its own; the tags are the device's, shared.
	recs2, _ := d.Poll(ctx)
	if reflect.ValueOf(recs2[0].Fields).UnsafePointer() == reflect.ValueOf(r.Fields).UnsafePointer() {
		t.Error("two polls share a fields map")
	}
	if reflect.ValueOf(recs2[0].Tags).UnsafePointer() != reflect.ValueOf(r.Tags).UnsafePointer() {
		t.Error("each poll copies the device's tags")
	}

	all, err := d.ReadAll(ctx)
	if err != nil || all["led"] != payload.String("green") || all["threshold_cm"] != payload.Float(150) || all["unit_address"] != payload.Int(17) {
		t.Errorf("ReadAll: %v, %v", all, err)
	}
}

func TestDeviceWrite(t *testing.T) {
	ctx := context.Background()
	b := newBank(17, 6)
	d := newTestDevice(t, b, "ultrasonic-bay", "", nil)
	if err := d.Write(ctx, "led", payload.String("red")); err != nil || b.holding[2] != 2 {
		t.Fatalf("write led: %v, reg 2 = %d", err, b.holding[2])
	}
	if want := AppendCRC(hx(t, "11 06 00 02 00 02")); !bytes.Equal(b.requests[len(b.requests)-1], want) {
		t.Errorf("request % X, want % X", b.requests[len(b.requests)-1], want)
	}
	if err := d.Write(ctx, "threshold_cm", payload.Int(180)); err != nil || b.holding[3] != 180 {
		t.Fatalf("write threshold: %v, reg 3 = %d", err, b.holding[3])
	}
	n := len(b.requests)
	cases := []struct {
		field string
		v     payload.Value
		msg   string
	}{
		{"colour", payload.String("red"), `modbus: bay-17: write "colour": profile ultrasonic-bay has no such field, want one of led, threshold_cm`},
		{"temp_c", payload.Float(3), `modbus: bay-17: write: field "temp_c" is read-only`},
		{"led", payload.String("blue"), `modbus: bay-17: write: field "led" takes one of "off", "green", "red", "yellow", got string blue`},
		{"threshold_cm", payload.Int(5000), `modbus: bay-17: write: field "threshold_cm": 5000 is out of range, want 1..1000`},
	}
	for _, c := range cases {
		if err := d.Write(ctx, c.field, c.v); err == nil || err.Error() != c.msg {
			t.Errorf("write %s: %v, want %q", c.field, err, c.msg)
		}
	}
	if len(b.requests) != n {
		t.Errorf("refused writes reached the bus")
	}
	// A device exception comes back wrapped.
	b.holding = b.holding[:2]
	err := d.Write(ctx, "led", payload.String("off"))
	if !errors.Is(err, ErrIllegalDataAddress) || err.Error() != "modbus: bay-17 (unit 17): write single register 2: device exception 0x02 (illegal data address)" {
		t.Errorf("write to a missing register: %v", err)
	}
}

func TestDevicePollGeomagneticAndIssues(t *testing.T) {
	ctx := context.Background()
	b := newBank(3, 6)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	d := newTestDevice(t, b, "geomagnetic-bay", "", log)
	copy(b.input, []uint16{2, 1, 2, 3, 355, 0xFFB5})
	recs, err := d.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, recs[0].Fields, map[string]payload.Value{
		"sensor_fault": payload.Bool(true), "battery_v": payload.Float(3.55), "rssi_dbm": payload.Float(-75),
	})
	b.input[0] = 9 // unknown state: reported once, not on every poll
	for i := 0; i < 3; i++ {
		if _, err := d.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if c := strings.Count(logs.String(), "modbus field left out"); c != 2 { // occupied and sensor_fault
		t.Errorf("issue logged %d times, want 2:\n%s", c, logs.String())
	}
	if !strings.Contains(logs.String(), "field=occupied raw=9") || !strings.Contains(logs.String(), "device=bay-17") {
		t.Errorf("log lacks field, raw value or device:\n%s", logs.String())
	}
	b.input[0] = 1
	recs, _ = d.Poll(ctx)
	if recs[0].Fields["occupied"] != payload.Bool(true) || strings.Count(logs.String(), "modbus field decodes again") != 2 {
		t.Errorf("recovery: %v\n%s", recs[0].Fields, logs.String())
	}
	// A failing read fails the poll, naming the device.
	b.silent = true
	_, err = d.Poll(ctx)
	if !errors.Is(err, drivers.ErrTimeout) || err.Error() != "modbus: bay-17 (unit 3): read input registers 0..5: no reply before the deadline" {
		t.Errorf("poll error %v", err)
	}
}

func TestDeviceProfilesDir(t *testing.T) {
	dir := t.TempDir()
	src := `name: relay-box
measurement: relay
blocks:
  - {name: out, function: coil, address: 0, count: 4}
  - {name: in, function: discrete, address: 0, count: 2}
  - {name: regs, function: holding, address: 10, count: 2}
fields:
  - {name: relay2, block: out, address: 2, type: bool, writable: true}
  - {name: door, block: in, address: 1, type: bool}
  - {name: energy_wh, block: regs, address: 10, type: uint32, writable: true}
`
	if err := os.WriteFile(filepath.Join(dir, "relay-box.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b := newBank(9, 12)
	b.discrete[1] = true
	b.holding[10], b.holding[11] = 0x0001, 0x0000
	d := newTestDevice(t, b, "relay-box", dir, nil)
	recs, err := d.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkFields(t, recs[0].Fields, map[string]payload.Value{"relay2": payload.Bool(false), "door": payload.Bool(true), "energy_wh": payload.Float(65536)})
	if len(b.requests) != 3 {
		t.Errorf("%d transactions, want one per block", len(b.requests))
	}
	if err := d.Write(ctx, "relay2", payload.Bool(true)); err != nil || !b.coils[2] {
		t.Fatalf("write coil: %v", err)
	}
	if err := d.Write(ctx, "energy_wh", payload.Int(0x00020003)); err != nil || b.holding[10] != 2 || b.holding[11] != 3 {
		t.Fatalf("write uint32: %v, %v", err, b.holding[10:])
	}
	if got := b.requests[len(b.requests)-1][1]; got != FuncWriteMultipleRegisters {
		t.Errorf("uint32 written with function %d, want 16", got)
	}
	// Built-in profiles stay available next to the directory's.
	newTestDevice(t, newBank(1, 6), "ultrasonic-bay", dir, nil)
}

func TestDeviceSpecErrors(t *testing.T) {
	b := newBank(1, 1)
	info, _ := drivers.Lookup(DriverName)
	cases := []struct {
		spec drivers.Spec
		env  drivers.Env
		msg  string
	}{
		{drivers.Spec{ID: "d", Unit: 0, Profile: "ultrasonic-bay"}, drivers.Env{Bus: b}, "modbus: device d: unit 0 is out of range, want 1..247"},
		{drivers.Spec{ID: "d", Unit: 248, Profile: "ultrasonic-bay"}, drivers.Env{Bus: b}, "modbus: device d: unit 248 is out of range, want 1..247"},
		{drivers.Spec{ID: "d", Unit: 1, Profile: "sonar"}, drivers.Env{Bus: b}, `modbus: device d: profile "sonar" is not defined, want one of geomagnetic-bay, ultrasonic-bay`},
		{drivers.Spec{ID: "d", Unit: 1}, drivers.Env{Bus: b}, "modbus: device d: missing profile"},
		{drivers.Spec{ID: "d", Unit: 1, Profile: "ultrasonic-bay", Bus: "rs485-2"}, drivers.Env{}, `modbus: device d: no serial bus (bus "rs485-2")`},
		{drivers.Spec{ID: "d", Unit: 1, Profile: "ultrasonic-bay", Options: map[string]any{"baud": 9600}}, drivers.Env{Bus: b}, `modbus: device d: unknown option "baud" (known: read_only)`},
		{drivers.Spec{ID: "d", Unit: 1, Profile: "ultrasonic-bay", Options: map[string]any{"read_ony": true}}, drivers.Env{Bus: b}, `modbus: device d: unknown option "read_ony" (did you mean read_only?)`},
		{drivers.Spec{ID: "d", Unit: 1, Profile: "ultrasonic-bay", Options: map[string]any{"read_only": "yes"}}, drivers.Env{Bus: b}, `modbus: device d: option read_only is yes, want true or false`},
		{drivers.Spec{ID: "d", Unit: 1, Profile: "ultrasonic-bay"}, drivers.Env{Bus: b, ProfilesDir: "/nonexistent/x"},
			"modbus: device d: profiles directory: stat /nonexistent/x: no such file or directory"},
		{drivers.Spec{ID: "d", Unit: 1, Profile: "ultrasonic-bay", Tags: map[string]string{"device": "x"}}, drivers.Env{Bus: b},
			`modbus: device d: tag "device" is set from the device id, remove it from tags`},
	}
	for _, c := range cases {
		_, err := info.New(c.spec, c.env)
		if err == nil || err.Error() != c.msg {
			t.Errorf("%+v:\n got  %v\n want %s", c.spec, err, c.msg)
		}
	}
}

// TestDeviceReadOnly: option read_only refuses writes the profile allows,
// before anything goes on the bus.
func TestDeviceReadOnly(t *testing.T) {
	b := newBank(17, 6)
	info, _ := drivers.Lookup(DriverName)
	dev, err := info.New(drivers.Spec{ID: "bay-17", Unit: 17, Profile: "ultrasonic-bay", Options: map[string]any{"read_only": true}}, drivers.Env{Bus: b})
	if err != nil {
		t.Fatal(err)
	}
	err = dev.(*Device).Write(context.Background(), "led", payload.Int(1))
	if err == nil || !strings.Contains(err.Error(), "read-only") || len(b.requests) != 0 {
		t.Errorf("write to a read-only device: %v, %d requests", err, len(b.requests))
	}
}

// TestSharedProfilesAndFieldTypes: the devices of one gateway share the
// profiles of the site's folder (read once), and the driver tells rules the
// types of a profile's published fields without building a device.
func TestSharedProfilesAndFieldTypes(t *testing.T) {
	dir := t.TempDir()
	src := "name: meter\nmeasurement: meter\nblocks: [{function: holding, address: 0, count: 3}]\nfields:\n  - {name: kwh, address: 0, type: uint32}\n  - {name: raw, address: 2, type: uint16, output: int, publish: false}\n"
	if err := os.WriteFile(filepath.Join(dir, "meter.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	env := drivers.Env{Bus: newBank(1, 3), ProfilesDir: dir, Shared: &drivers.Shared{}}
	info, _ := drivers.Lookup(DriverName)
	a, err := info.New(drivers.Spec{ID: "m1", Unit: 1, Profile: "meter"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "meter.yaml")); err != nil {
		t.Fatal(err)
	}
	b, err := info.New(drivers.Spec{ID: "m2", Unit: 2, Profile: "meter"}, env)
	if err != nil {
		t.Fatalf("second device reloaded the folder instead of sharing it: %v", err)
	}
	if a.(*Device).Profile() != b.(*Device).Profile() {
		t.Error("two devices of one gateway hold two copies of one profile")
	}
	types, err := info.Fields(drivers.Spec{ID: "m3", Profile: "meter"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if got := types["meter"]; len(got) != 1 || got["kwh"] != payload.TypeFloat {
		t.Errorf("field types = %v, want only the published kwh as float", types)
	}
}

// A poll's garbage is its fields map, its record and the request: the
// device's tags are shared, not copied (a third of a poll's bytes before).
// The in-memory unit allocates a little of its own.
func TestPollSharesTags(t *testing.T) {
	b := newBank(17, 6)
	copy(b.holding, []uint16{0x0001, 87, 1, 150, 231, 17})
	d := newTestDevice(t, b, "ultrasonic-bay", "", nil)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(50, func() {
		b.requests = b.requests[:0]
		if _, err := d.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 10 {
		t.Errorf("Poll allocates %v times, want at most 10", allocs)
	}
}
