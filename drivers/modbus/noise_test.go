package modbus

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/luling-edge/luling/drivers"
)

// Noise on the line before a reply (a glitch when the slave's driver
// turns on, a byte left from another transaction) is skipped up to the
// reply's unit and function code, and counted; the reply is read.
func TestClientSkipsLineNoiseBeforeReply(t *testing.T) {
	for _, noise := range [][]byte{
		{0x00},
		{0xFF, 0x01},       // "reply has function code 0x01" before the fix
		{0x11, 0x11},       // the unit's own address as noise
		{0x11, 0x03, 0x07}, // unit and function, then an odd byte count
		bytes.Repeat([]byte{0x55}, 40),
	} {
		b := newBank(17, 10)
		for i := range b.holding {
			b.holding[i] = uint16(0x100 + i)
		}
		b.mangle = func(reply []byte) []byte { return append(bytes.Clone(noise), reply...) }
		c := NewClient(b, 17, "bay-17")
		regs, err := c.ReadHoldingRegisters(context.Background(), 2, 3)
		if err != nil || !equalSlices(regs, []uint16{0x102, 0x103, 0x104}) {
			t.Fatalf("noise % X: read %04X, %v; want the registers", noise, regs, err)
		}
		if got := c.NoiseBytes(); got != uint64(len(noise)) {
			t.Errorf("noise % X: %d noise bytes counted, want %d", noise, got, len(noise))
		}
		// An exception reply after noise is found too.
		b.mangle = func(reply []byte) []byte { return append(bytes.Clone(noise), b.exception(reply, 2)...) }
		if _, err := c.ReadHoldingRegisters(context.Background(), 2, 3); !errors.Is(err, ErrIllegalDataAddress) {
			t.Errorf("noise % X then exception 2: %v, want ErrIllegalDataAddress", noise, err)
		}
	}
}

// A reply that noise garbled is a CRC error, whatever came before it, and
// so is a reply that is nothing but noise.
func TestGarbledRepliesAreCRCErrors(t *testing.T) {
	b := newBank(17, 10)
	c := NewClient(b, 17, "bay-17")
	b.mangle = func(reply []byte) []byte {
		reply = append([]byte{0x00}, reply...)
		reply[5] ^= 0x40
		return reply
	}
	if _, err := c.ReadHoldingRegisters(context.Background(), 0, 3); !errors.Is(err, drivers.ErrCRC) {
		t.Errorf("garbled reply after noise: %v, want ErrCRC", err)
	}
	b.mangle = func(reply []byte) []byte { return bytes.Repeat([]byte{0x55}, maxNoise+10) }
	if _, err := c.ReadHoldingRegisters(context.Background(), 0, 3); !errors.Is(err, drivers.ErrCRC) {
		t.Errorf("noise only: %v, want ErrCRC", err)
	}
}

// The device shows the noise it skipped on the status page.
func TestDeviceReportsNoiseBytes(t *testing.T) {
	b := newBank(17, 6)
	d := newTestDevice(t, b, "ultrasonic-bay", "", nil)
	b.mangle = func(reply []byte) []byte { return append([]byte{0xFF, 0x00, 0x03}, reply...) }
	if _, err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := d.Report(); r["noise_bytes"] != uint64(3) {
		t.Errorf("report %v, want noise_bytes 3", r)
	}
}
