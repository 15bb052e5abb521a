package modbus

import (
	"errors"
	"math"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/luling-edge/luling/firmware-config/profiles"
	"github.com/luling-edge/luling/payload"
)

const allTypes = `name: all-types
measurement: test_m
blocks:
  - name: regs
    function: holding
    address: 100
    count: 30
  - name: flags
    function: coil
    address: 0
    count: 4
fields:
  - {name: u16, block: regs, address: 100, type: uint16}
  - {name: i16, block: regs, address: 101, type: int16, scale: 0.1}
  - {name: u32, block: regs, address: 102, type: uint32}
  - {name: i32_le, block: regs, address: 104, type: int32, word_order: little}
  - {name: f32, block: regs, address: 106, type: float32}
  - {name: f32_swapped, block: regs, address: 108, type: float32, word_order: little, byte_order: little}
  - {name: u64, block: regs, address: 110, type: uint64}
  - {name: i64, block: regs, address: 114, type: int64, output: int}
  - {name: label, block: regs, address: 118, type: string, length: 4}
  - {name: bit3, block: regs, address: 122, type: bool, bit: 3}
  - {name: mode, block: regs, address: 123, type: int16, values: {-1: "off", 1: "on"}}
  - {name: celsius, block: regs, address: 124, type: uint16, scale: 0.5, offset: -40}
  - {name: na, block: regs, address: 125, type: int16, not_implemented: 0x8000, publish: false}
  - {name: byteswap, block: regs, address: 126, type: uint16, byte_order: little, output: int}
  - {name: door, block: flags, address: 2, type: bool}
`

func mustLoad(t testing.TB, src string) *Profile {
	t.Helper()
	p, err := LoadProfile("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p
}

func TestDecodeTypes(t *testing.T) {
	p := mustLoad(t, allTypes)
	words := make([]uint16, 30)
	set := func(addr int, regs ...uint16) { copy(words[addr-100:], regs) }
	set(100, 0xFFFE)
	set(101, 0xFF85)                                       // -123
	set(102, 0x0001, 0x0002)                               // 65538
	set(104, 0xFFFE, 0xFFFF)                               // low word first: 0xFFFFFFFE = -2
	set(106, 0x4049, 0x0FDB)                               // float32 pi
	set(108, 0xDB0F, 0x4940)                               // pi, both orders swapped
	set(110, 0x0000, 0x0001, 0x0000, 0x0000)               // 2^32
	set(114, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFB)               // -5
	set(118, 0x4142, 0x3132, 0x0000, 0x0000)               // "AB12"
	set(122, 0x0008)                                       // bit 3
	set(123, 0xFFFF)                                       // -1 → off
	set(124, 130)                                          // 130*0.5-40 = 25
	set(125, 0x8000)                                       // not implemented
	set(126, 0x3412)                                       // 0x1234 byte-swapped
	got := map[string]payload.Value{"na": payload.Int(99)} // stale value must go
	issues := p.DecodeBlockAll(0, words, got, nil)
	want := map[string]payload.Value{
		"u16": payload.Float(65534), "i16": payload.Float(-12.3), "u32": payload.Float(65538),
		"i32_le": payload.Float(-2), "f32": payload.Float(float64(float32(math.Pi))),
		"f32_swapped": payload.Float(float64(float32(math.Pi))), "u64": payload.Float(1 << 32),
		"i64": payload.Int(-5), "label": payload.String("AB12"), "bit3": payload.Bool(true),
		"mode": payload.String("off"), "celsius": payload.Float(25), "byteswap": payload.Int(0x1234),
	}
	if len(issues) != 0 {
		t.Errorf("issues: %v", issues)
	}
	checkFields(t, got, want)

	// Second sample: other bits, an unmapped enum, a present sentinel field.
	set(122, 0x0007)
	set(123, 2)
	set(125, 0xFFFB)
	issues = p.DecodeBlockAll(0, words, got, nil)
	if len(issues) != 1 || issues[0] != (Issue{Field: "mode", Raw: 2, Reason: ReasonUnmapped}) {
		t.Errorf("issues: %+v", issues)
	}
	if _, ok := got["mode"]; ok {
		t.Errorf("unmapped enum left mode = %v in the record", got["mode"])
	}
	if v := got["bit3"]; v != payload.Bool(false) {
		t.Errorf("bit3 = %v", v)
	}
	if v := got["na"]; v != payload.Float(-0.5*10) {
		t.Errorf("na = %v, want -5", v)
	}

	// Published only: na is not published.
	pub := map[string]payload.Value{}
	p.DecodeBlock(0, words, pub, nil)
	if _, ok := pub["na"]; ok || len(pub) != len(p.Blocks[0].fields)-1-1 { // na left out, mode unmapped
		t.Errorf("published fields: %v", pub)
	}

	// Coil block: one word per bit.
	flags := map[string]payload.Value{}
	p.DecodeBlock(1, []uint16{0, 0, 1, 0}, flags, nil)
	checkFields(t, flags, map[string]payload.Value{"door": payload.Bool(true)})

	// float32 NaN is reported, not published.
	set(106, 0x7FC0, 0x0000)
	issues = p.DecodeBlockAll(0, words, got, nil)
	if _, ok := got["f32"]; ok || len(issues) != 2 || issues[0].Field != "f32" || issues[0].Reason != ReasonNotFinite || issues[0].Raw != 0x7FC00000 {
		t.Errorf("NaN: issues %+v, f32 %v", issues, got["f32"])
	}
}

func checkFields(t *testing.T, got, want map[string]payload.Value) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok || !g.Equal(w) {
			t.Errorf("field %s = %v (%s, present %v), want %v (%s)", k, g, g.Type(), ok, w, w.Type())
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %s = %v", k, g)
		}
	}
}

func TestShippedProfiles(t *testing.T) {
	all, err := LoadProfiles(profiles.FS)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("profiles: %v", all)
	}
	us := all["ultrasonic-bay"]
	if us == nil || us.Measurement != "parking_bay" || len(us.Blocks) != 1 || us.Blocks[0].Function != FuncReadHoldingRegisters || us.Blocks[0].Address != 0 || us.Blocks[0].Count != 6 {
		t.Fatalf("ultrasonic-bay: %+v", us)
	}
	cases := []struct {
		name    string
		profile *Profile
		regs    []uint16
		all     bool
		want    map[string]payload.Value
		issues  int
	}{
		{"ultrasonic occupied", us, []uint16{0x0001, 142, 2, 150, 0xFF9C, 17}, false, map[string]payload.Value{
			"occupied": payload.Bool(true), "sensor_fault": payload.Bool(false), "distance_cm": payload.Float(142), "temp_c": payload.Float(-10),
		}, 0},
		{"ultrasonic no echo, fault", us, []uint16{0x0002, 0xFFFF, 0, 150, 215, 17}, false, map[string]payload.Value{
			"occupied": payload.Bool(false), "sensor_fault": payload.Bool(true), "temp_c": payload.Float(21.5),
		}, 0},
		{"ultrasonic settings", us, []uint16{0x0003, 300, 3, 120, 0, 17}, true, map[string]payload.Value{
			"occupied": payload.Bool(true), "sensor_fault": payload.Bool(true), "distance_cm": payload.Float(300), "temp_c": payload.Float(0),
			"led": payload.String("yellow"), "threshold_cm": payload.Float(120), "unit_address": payload.Int(17),
		}, 0},
		{"ultrasonic unknown led", us, []uint16{0, 250, 9, 120, 0, 17}, true, map[string]payload.Value{
			"occupied": payload.Bool(false), "sensor_fault": payload.Bool(false), "distance_cm": payload.Float(250), "temp_c": payload.Float(0),
			"threshold_cm": payload.Float(120), "unit_address": payload.Int(17),
		}, 1},
		{"geomagnetic free", all["geomagnetic-bay"], []uint16{0, 0xFFF6, 253, 0x8000, 362, 0xFFAB}, false, map[string]payload.Value{
			"occupied": payload.Bool(false), "sensor_fault": payload.Bool(false), "battery_v": payload.Float(3.62), "rssi_dbm": payload.Float(-85),
		}, 0},
		{"geomagnetic occupied", all["geomagnetic-bay"], []uint16{1, 0xFFF6, 253, 0x8000, 300, 0xFFAB}, true, map[string]payload.Value{
			"occupied": payload.Bool(true), "sensor_fault": payload.Bool(false), "battery_v": payload.Float(3), "rssi_dbm": payload.Float(-85),
			"mag_x_ut": payload.Float(-1), "mag_y_ut": payload.Float(25.3), "mag_z_ut": payload.Float(-3276.8),
		}, 0},
		{"geomagnetic failed", all["geomagnetic-bay"], []uint16{2, 0, 0, 0, 298, 0xFF9C}, false, map[string]payload.Value{
			"sensor_fault": payload.Bool(true), "battery_v": payload.Float(2.98), "rssi_dbm": payload.Float(-100),
		}, 0},
		{"geomagnetic unknown state", all["geomagnetic-bay"], []uint16{7, 0, 0, 0, 298, 0xFF9C}, false, map[string]payload.Value{
			"battery_v": payload.Float(2.98), "rssi_dbm": payload.Float(-100),
		}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := map[string]payload.Value{}
			var issues []Issue
			if c.all {
				issues = c.profile.DecodeBlockAll(0, c.regs, got, nil)
			} else {
				issues = c.profile.DecodeBlock(0, c.regs, got, nil)
			}
			if len(issues) != c.issues {
				t.Errorf("issues %+v, want %d", issues, c.issues)
			}
			checkFields(t, got, c.want)
			rec := payload.Record{Measurement: c.profile.Measurement, Tags: map[string]string{"device": "d", "bay": "1"}, Fields: got}
			if err := payload.CheckSchema(&rec); err != nil {
				t.Errorf("record breaks the InfluxDB contract: %v", err)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	p := mustLoad(t, `name: w
measurement: m
blocks: [{name: h, function: holding, address: 0, count: 20}, {name: c, function: coil, address: 0, count: 2}]
fields:
  - {name: led, block: h, address: 0, type: uint16, values: {0: "off", 1: "green", 2: "red"}, writable: true}
  - {name: setpoint, block: h, address: 1, type: int16, scale: 0.1, writable: true, min: -20, max: 50}
  - {name: big, block: h, address: 2, type: uint32, word_order: little, writable: true}
  - {name: ratio, block: h, address: 4, type: float32, writable: true}
  - {name: bytes, block: h, address: 6, type: uint16, byte_order: little, writable: true, not_implemented: 0xFFFF}
  - {name: relay, block: c, address: 1, type: bool, writable: true}
  - {name: temp, block: h, address: 7, type: int16}
`)
	cases := []struct {
		field string
		v     payload.Value
		regs  []uint16
		msg   string
	}{
		{"led", payload.String("red"), []uint16{2}, ""},
		{"led", payload.String("blue"), nil, `field "led" takes one of "off", "green", "red", got string blue`},
		{"led", payload.Int(1), nil, `field "led" takes one of "off", "green", "red", got int 1`},
		{"setpoint", payload.Float(-12.3), []uint16{0xFF85}, ""},
		{"setpoint", payload.Int(50), []uint16{500}, ""},
		{"setpoint", payload.Float(50.1), nil, `field "setpoint": 50.1 is out of range, want -20..50`},
		{"setpoint", payload.String("5"), nil, `field "setpoint" takes a number, got string 5`},
		{"big", payload.Int(0x12345678), []uint16{0x5678, 0x1234}, ""},
		{"big", payload.Int(-1), nil, `field "big": -1 is out of range for uint32 (raw -1, want 0..4294967295)`},
		{"big", payload.Float(5e9), nil, `field "big": 5e+09 is out of range for uint32 (raw 5000000000, want 0..4294967295)`},
		{"ratio", payload.Float(math.Pi), []uint16{0x4049, 0x0FDB}, ""},
		{"ratio", payload.Float(math.NaN()), nil, `field "ratio": value NaN is not a valid float`},
		{"bytes", payload.Int(0x1234), []uint16{0x3412}, ""},
		{"bytes", payload.Int(0xFFFF), nil, `field "bytes": 65535 encodes as 0xFFFF, the field's not-implemented value`},
		{"relay", payload.Bool(true), []uint16{1}, ""},
		{"relay", payload.Int(1), nil, `field "relay" takes a bool, got int 1`},
		{"temp", payload.Float(1), nil, `field "temp" is read-only`},
	}
	for _, c := range cases {
		f, ok := p.Field(c.field)
		if !ok {
			t.Fatalf("no field %s", c.field)
		}
		regs, err := f.Encode(c.v)
		if c.msg != "" {
			if err == nil || err.Error() != c.msg {
				t.Errorf("%s = %v: err %v, want %q", c.field, c.v, err, c.msg)
			}
			continue
		}
		if err != nil || !equalSlices(regs, c.regs) {
			t.Errorf("%s = %v: %04X, %v; want %04X", c.field, c.v, regs, err, c.regs)
		}
		// Round trip through the decoder.
		if f.Type != TypeBool {
			v, ok, _ := f.decode(regs)
			if !ok || math.Abs(v.Float()-c.v.Float()) > 1e-6*math.Max(1, math.Abs(c.v.Float())) && v.Str() != c.v.Str() {
				t.Errorf("%s: %v decodes back as %v", c.field, c.v, v)
			}
		}
	}
}

func TestLoadErrors(t *testing.T) {
	head := "name: p\nmeasurement: m\nblocks:\n  - {name: a, function: holding, address: 10, count: 4}\nfields:\n"
	cases := []struct {
		name, src, msg string
	}{
		{"unknown key", head + "  - {name: x, address: 10, type: uint16, colour: red}\n",
			`test.yaml:6:42: fields[0].colour: unknown key "colour" (known keys: name, description, block, address, type, bit, length, scale, offset, word_order, byte_order, output, …)`},
		{"misspelt key", head + "  - {name: x, address: 10, type: uint16, scael: 2}\n",
			`test.yaml:6:42: fields[0].scael: unknown key "scael" (did you mean scale?)`},
		{"unknown type", head + "  - {name: x, address: 10, type: uint17}\n",
			`test.yaml:6: field "x": type "uint17" is unknown, want bool, uint16, int16, uint32, int32, float32, uint64, int64 or string`},
		{"bit out of range", head + "  - name: x\n    address: 10\n    type: bool\n    bit: 16\n",
			`test.yaml:9: field "x": bit 16 is out of range, want 0..15`},
		{"bool without bit", head + "  - {name: x, address: 10, type: bool}\n",
			`test.yaml:6: field "x": a bool from a register needs bit (0..15)`},
		{"duplicate field", head + "  - {name: x, address: 10, type: uint16}\n  - {name: x, address: 11, type: uint16}\n",
			`test.yaml:7: field "x" is defined twice (first at line 6)`},
		{"outside block", head + "  - name: x\n    address: 13\n    type: uint32\n",
			`test.yaml:7: field "x": addresses 13..14 lie outside block "a" (10..13)`},
		{"before block", head + "  - {name: x, address: 9, type: uint16}\n",
			`test.yaml:6: field "x": address 9 lies outside block "a" (10..13)`},
		{"overlap", head + "  - {name: x, address: 10, type: uint32}\n  - {name: y, address: 11, type: int16}\n",
			`test.yaml:7: field "y": address 11 overlaps field "x"`},
		{"same bit", head + "  - {name: x, address: 10, type: bool, bit: 4}\n  - {name: y, address: 10, type: bool, bit: 4}\n",
			`test.yaml:7: field "y": bit 4 of address 10 is already field "x"`},
		{"unknown block", head + "  - {name: x, block: b, address: 10, type: uint16}\n",
			`test.yaml:6: field "x": block "b" is not defined, want one of "a"`},
		{"min on a bool", head + "  - {name: x, address: 10, type: bool, bit: 1, min: 0}\n",
			`test.yaml:6: field "x": min is only for numeric fields (not bool, string or enum)`},
		{"max on an enum", head + "  - name: x\n    address: 10\n    type: uint16\n    values: {0: a, 1: b}\n    max: 1\n",
			`test.yaml:10: field "x": max is only for numeric fields (not bool, string or enum)`},
		{"min above max", head + "  - name: x\n    address: 10\n    type: int16\n    min: 5\n    max: -5\n",
			`test.yaml:9: field "x": min 5 is above max -5`},
		{"max not a number", head + "  - {name: x, address: 10, type: uint16, max: high}\n",
			`test.yaml:6:47: fields[0].max: expected a number, got string "high"`},
		{"count", "name: p\nmeasurement: m\nblocks:\n  - {function: input, address: 0, count: 126}\nfields:\n  - {name: x, address: 0, type: uint16}\n",
			`test.yaml:4: block 1: count 126 is out of range, want 1..125 for input`},
		{"function", "name: p\nmeasurement: m\nblocks:\n  - {function: holdings, address: 0, count: 1}\nfields:\n  - {name: x, address: 0, type: uint16}\n",
			`test.yaml:4: block 1: function "holdings" is unknown, want holding, input, coil or discrete`},
		{"overlapping blocks", "name: p\nmeasurement: m\nblocks:\n  - {name: a, function: input, address: 0, count: 10}\n  - {name: b, function: input, address: 9, count: 2}\nfields:\n  - {name: x, block: a, address: 0, type: uint16}\n",
			`test.yaml:5: block 2 (input 9..10) overlaps block 1 (input 0..9)`},
		{"enum type mix", head + "  - {name: x, address: 10, type: uint16, values: {0: false, 1: \"on\"}}\n",
			`test.yaml:6: field "x": values 1 is a string, but line 6 gives a bool; want all of one type`},
		{"enum key range", head + "  - {name: x, address: 10, type: uint16, values: {-1: \"a\"}}\n",
			`test.yaml:6: field "x": values key "-1" is invalid, want an integer in 0..65535 for uint16`},
		{"sentinel range", head + "  - {name: x, address: 10, type: int16, not_implemented: 40000}\n",
			`test.yaml:6: field "x": not_implemented "40000" is invalid, want an integer in -32768..32767 for int16`},
		{"scale on bool", head + "  - {name: x, address: 10, type: bool, bit: 1, scale: 2}\n",
			`test.yaml:6: field "x": scale and offset are only for numeric fields without values`},
		{"zero scale", head + "  - {name: x, address: 10, type: uint16, scale: 0}\n",
			`test.yaml:6: field "x": scale 0 is invalid, want a finite non-zero number`},
		{"writable input", "name: p\nmeasurement: m\nblocks:\n  - {function: input, address: 0, count: 1}\nfields:\n  - {name: x, address: 0, type: uint16, writable: true}\n",
			`test.yaml:6: field "x": only fields of holding or coil blocks can be writable, not of input blocks`},
		{"contract", "name: p\nmeasurement: parking_bay\nblocks:\n  - {function: holding, address: 0, count: 1}\nfields:\n  - {name: distance_cm, address: 0, type: uint16, output: int}\n",
			`test.yaml:6: field "distance_cm": decodes as int, the InfluxDB contract for parking_bay says float`},
		{"wrong yaml type", head + "  - {name: x, address: ten, type: uint16}\n",
			`test.yaml:6:24: fields[0].address: expected an integer, got string "ten"`},
		{"address range", head + "  - {name: x, address: 70000, type: uint16}\n",
			`test.yaml:6:24: fields[0].address: 70000 is out of range 0..65535`},
		{"missing measurement", "name: p\nblocks:\n  - {function: holding, address: 0, count: 1}\nfields:\n  - {name: x, address: 0, type: uint16}\n",
			`test.yaml:1: missing measurement, want an InfluxDB measurement name like parking_bay`},
		{"empty", "", `test.yaml:1: file is empty, want a profile mapping`},
		{"two documents", head + "  - {name: x, address: 10, type: uint16}\n---\nname: q\n",
			`test.yaml:7: file holds more than one YAML document, want one profile`},
		{"bad yaml", "name: [\n", "test.yaml:2: yaml syntax: did not find expected node content (check indentation, colons, brackets and quotes near this line)"},
		{"several problems", head + "  - {name: x, address: 10, type: bool, bit: 20}\n  - {name: y, address: 99, type: uint16}\n",
			"test.yaml:6: field \"x\": bit 20 is out of range, want 0..15\ntest.yaml:7: field \"y\": address 99 lies outside block \"a\" (10..13)"},
	}
	for _, c := range cases {
		_, err := LoadProfile("test.yaml", []byte(c.src))
		if err == nil || err.Error() != c.msg {
			t.Errorf("%s:\n got  %v\n want %s", c.name, err, c.msg)
			continue
		}
		var pe *ProfileError
		if !errors.As(err, &pe) || pe.File != "test.yaml" {
			t.Errorf("%s: not a *ProfileError: %T", c.name, err)
		}
	}
}

func TestLoadProfilesDuplicateName(t *testing.T) {
	src := "name: same\nmeasurement: m\nblocks: [{function: holding, address: 0, count: 1}]\nfields: [{name: x, address: 0, type: uint16}]\n"
	_, err := LoadProfiles(fstest.MapFS{"a.yaml": {Data: []byte(src)}, "b.yml": {Data: []byte(src)}, "notes.txt": {Data: []byte("x")}})
	if err == nil || err.Error() != `b.yml:1: profile name "same" is already defined in a.yaml` {
		t.Fatalf("err = %v", err)
	}
	_, err = LoadProfiles(fstest.MapFS{"a.yaml": {Data: []byte(src)}, "bad.yaml": {Data: []byte("name: x\n")}})
	if err == nil || !strings.HasPrefix(err.Error(), "bad.yaml:1: missing measurement") {
		t.Fatalf("err = %v", err)
	}
}
