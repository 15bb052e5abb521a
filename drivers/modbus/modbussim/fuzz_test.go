package modbussim

import (
	"testing"

	"github.com/luling-edge/luling/drivers/modbus"
)

// FuzzRequestFramer feeds arbitrary bytes through the framer and the
// request decoder of a unit, the way Serve does, and checks that it always
// makes progress, never panics, and only ever answers with well-formed
// frames of the length the function code implies.
func FuzzRequestFramer(f *testing.F) {
	for _, s := range [][]byte{
		modbus.AppendCRC([]byte{1, 0x03, 0, 0, 0, 6}),
		modbus.AppendCRC([]byte{1, 0x01, 0, 0, 0, 20}),
		modbus.AppendCRC([]byte{1, 0x02, 0, 3, 0, 9}),
		modbus.AppendCRC([]byte{1, 0x04, 0, 0, 0, 2}),
		modbus.AppendCRC([]byte{1, 0x05, 0, 1, 0xFF, 0}),
		modbus.AppendCRC([]byte{1, 0x06, 0, 2, 0, 3}),
		modbus.AppendCRC([]byte{1, 0x0F, 0, 0, 0, 10, 2, 0xCD, 0x01}),
		modbus.AppendCRC([]byte{1, 0x10, 0, 2, 0, 2, 4, 0, 1, 0, 50}),
		modbus.AppendCRC([]byte{0, 0x10, 0, 2, 0, 1, 2, 0, 1}),
		modbus.AppendCRC([]byte{1, 0x2B, 0x0E, 1, 0}),
		modbus.AppendCRC([]byte{1, 0x10, 0, 0, 0, 2, 2, 0, 1}),
		{0xFF, 0x01, 0x03, 0x00},
		{0x01, 0x10, 0x00, 0x00, 0x00, 0x7B, 0xF6},
		{},
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, inSync bool) {
		srv, err := NewServer(Config{})
		if err != nil {
			t.Fatal(err)
		}
		u, err := NewSensor(srv, 1, Ultrasonic, 1)
		if err != nil {
			t.Fatal(err)
		}
		coils, err := srv.AddUnit(2, Sizes{Coils: 100, DiscreteInputs: 100, HoldingRegisters: 100, InputRegisters: 100})
		if err != nil {
			t.Fatal(err)
		}
		units := map[byte]*Unit{1: u.Unit(), 2: coils}
		if len(data) > 4*maxADU {
			data = data[:4*maxADU] // longer streams add nothing but time
		}
		buf := append([]byte(nil), data...)
		for len(buf) > 0 {
			n, err := requestLen(buf, inSync)
			if err != nil {
				buf, inSync = buf[1:], false
				continue
			}
			if n == 0 || len(buf) < n {
				break // waits for more; the stale timer would drop a byte
			}
			if n < minFrame || n > maxADU {
				t.Fatalf("frame length %d for % X", n, buf)
			}
			frame := buf[:n]
			if !modbus.CheckCRC(frame) {
				buf, inSync = buf[1:], false
				continue
			}
			inSync = true
			if target := units[frame[0]]; target != nil || frame[0] == 0 {
				for id, un := range units {
					if frame[0] != 0 && id != frame[0] {
						continue
					}
					reply, _ := un.execute(nil, frame)
					if frame[0] == 0 {
						if len(reply) != 0 {
							t.Fatalf("broadcast % X got reply % X", frame, reply)
						}
						continue
					}
					checkReply(t, frame, reply)
				}
			}
			buf = buf[n:]
		}
	})
}

func checkReply(t *testing.T, req, reply []byte) {
	t.Helper()
	if !modbus.CheckCRC(reply) || reply[0] != req[0] {
		t.Fatalf("request % X: malformed reply % X", req, reply)
	}
	if reply[1] == req[1]|0x80 {
		if len(reply) != 5 || reply[2] < 1 || reply[2] > 4 {
			t.Fatalf("request % X: malformed exception % X", req, reply)
		}
		return
	}
	if reply[1] != req[1] {
		t.Fatalf("request % X: reply % X for another function", req, reply)
	}
	qty := int(be16(req[4:]))
	if want := ReplyLen(req[1], qty); len(reply) != want {
		t.Fatalf("request % X: reply % X is %d bytes, want %d", req, reply, len(reply), want)
	}
}

func TestCRCPrefixAgreesWithCheckCRC(t *testing.T) {
	frames := [][]byte{
		modbus.AppendCRC([]byte{1, 0x2B}),
		modbus.AppendCRC([]byte{1, 0x2B, 0x0E, 1, 0}),
		append(modbus.AppendCRC([]byte{7, 0x41, 1, 2, 3}), 9, 9, 9),
		{1, 0x41, 2, 3, 4, 5},
	}
	for _, f := range frames {
		want := 0
		for n := minFrame; n <= len(f); n++ {
			if modbus.CheckCRC(f[:n]) {
				want = n
				break
			}
		}
		if got := crcPrefix(f); got != want {
			t.Errorf("crcPrefix(% X) = %d, want %d", f, got, want)
		}
	}
}
