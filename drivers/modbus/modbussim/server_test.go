package modbussim

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/internal/ptypair"
)

// rig is a server serving the master side of a pty, and the slave side
// opened as the gateway would open it.
type rig struct {
	srv   *Server
	pair  *ptypair.Pair
	tty   *os.File
	done  chan error
	stop  context.CancelFunc
	baud  int
	slack time.Duration
}

func newRig(t testing.TB, line Line) *rig {
	t.Helper()
	srv, err := NewServer(Config{Name: "test-line", Line: line})
	if err != nil {
		t.Fatal(err)
	}
	return serveRig(t, srv)
}

func serveRig(t testing.TB, srv *Server) *rig {
	t.Helper()
	p, err := ptypair.Open("")
	if err != nil {
		t.Fatal(err)
	}
	tty, err := os.OpenFile(p.SlavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{srv: srv, pair: p, tty: tty, done: make(chan error, 1), stop: cancel}
	go func() { r.done <- srv.Serve(ctx, p.Master) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
		tty.Close()
		p.Close()
	})
	return r
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (r *rig) write(t testing.TB, b []byte) {
	t.Helper()
	if _, err := r.tty.Write(b); err != nil {
		t.Fatalf("write request: %v", err)
	}
}

// read reads exactly n bytes or fails after a generous deadline.
func (r *rig) read(t testing.TB, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	r.tty.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(r.tty, buf); err != nil {
		t.Fatalf("read %d-byte reply: %v", n, err)
	}
	return buf
}

// transact writes req and returns the reply of n bytes.
func (r *rig) transact(t testing.TB, req []byte, n int) []byte {
	t.Helper()
	r.write(t, req)
	return r.read(t, n)
}

// bits sets bools from LSB-first packed bytes.
func bits(b []byte, n int) []bool {
	out := make([]bool, n)
	for i := range out {
		out[i] = b[i/8]&(1<<(i%8)) != 0
	}
	return out
}

// addSpecUnit adds unit 0x11 loaded with the data of the reference
// examples of every function code.
func addSpecUnit(t *testing.T, srv *Server) *Unit {
	t.Helper()
	u, err := srv.AddUnit(0x11, Sizes{Coils: 256, DiscreteInputs: 256, HoldingRegisters: 128, InputRegisters: 16})
	if err != nil {
		t.Fatal(err)
	}
	must(t, u.WriteCoils(0x13, bits(mustHex(t, "CD6BB20E1B"), 37)...))
	must(t, u.WriteDiscrete(0xC4, bits(mustHex(t, "ACDB35"), 22)...))
	must(t, u.WriteHolding(0x6B, 0xAE41, 0x5652, 0x4340))
	must(t, u.WriteInput(8, 0x000A))
	return u
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestFunctionCodesByteForByte(t *testing.T) {
	r := newRig(t, Line{Baud: 115200})
	u := addSpecUnit(t, r.srv)
	cases := []struct {
		name, req, reply string
	}{
		{"01 read coils", "11 01 0013 0025 0E84", "11 01 05 CD6BB20E1B 45E6"},
		{"02 read discrete inputs", "11 02 00C4 0016 BAA9", "11 02 03 ACDB35 2018"},
		{"03 read holding registers", "11 03 006B 0003 7687", "11 03 06 AE41 5652 4340 49AD"},
		{"04 read input registers", "11 04 0008 0001 B298", "11 04 02 000A F8F4"},
		{"05 write single coil", "11 05 00AC FF00 4E8B", "11 05 00AC FF00 4E8B"},
		{"06 write single register", "11 06 0001 0003 9A9B", "11 06 0001 0003 9A9B"},
		{"15 write multiple coils", "11 0F 0013 000A 02 CD01 BF0B", "11 0F 0013 000A 2699"},
		{"16 write multiple registers", "11 10 0001 0002 04 000A 0102 C6F0", "11 10 0001 0002 1298"},
	}
	for _, c := range cases {
		want := mustHex(t, c.reply)
		got := r.transact(t, mustHex(t, c.req), len(want))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: reply % X, want % X", c.name, got, want)
		}
	}
	// The writes landed where they should.
	if c, _ := u.ReadCoils(0xAC, 1); !c[0] {
		t.Error("FC05 did not set coil 0xAC")
	}
	if got, _ := u.ReadCoils(0x13, 10); !equal(got, bits([]byte{0xCD, 0x01}, 10)) {
		t.Errorf("FC15 coils 0x13..0x1C = %v", got)
	}
	if got, _ := u.ReadHolding(1, 2); got[0] != 0x000A || got[1] != 0x0102 {
		t.Errorf("FC16 registers 1..2 = %04X", got)
	}
	st := u.Stats()
	if st.Requests != 8 || st.Replies != 8 || st.Exceptions != 0 || st.CRCErrors != 0 {
		t.Errorf("unit stats %+v, want 8 requests and 8 replies", st)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestExceptions(t *testing.T) {
	r := newRig(t, Line{Baud: 115200})
	u := addSpecUnit(t, r.srv)
	cases := []struct {
		name string
		pdu  string // after the unit address, before the CRC
		exc  string // exception function and code
	}{
		{"unknown function 2B", "2B 0E 01 00", "AB 01"},
		{"unknown function 07", "07", "87 01"},
		{"read past the holding registers", "03 007F 0002", "83 02"},
		{"read zero registers", "03 0000 0000", "83 03"},
		{"read 126 registers", "03 0000 007E", "83 03"},
		{"read input registers past the table", "04 0010 0001", "84 02"},
		{"read 2001 coils", "01 0000 07D1", "81 03"},
		{"coil value neither FF00 nor 0000", "05 0001 1234", "85 03"},
		{"write coil past the table", "05 0100 FF00", "85 02"},
		{"write register past the table", "06 0080 0001", "86 02"},
		{"byte count disagrees with quantity", "10 0000 0002 02 0001", "90 03"},
		{"write 124 registers", "10 0000 007C 00", "90 03"},
		{"write registers past the table", "10 007F 0002 04 0001 0002", "90 02"},
		{"write coils past the table", "0F 00FF 0002 01 03", "8F 02"},
	}
	for _, c := range cases {
		req := modbus.AppendCRC(append([]byte{0x11}, mustHex(t, c.pdu)...))
		want := modbus.AppendCRC(append([]byte{0x11}, mustHex(t, c.exc)...))
		got := r.transact(t, req, len(want))
		if !bytes.Equal(got, want) {
			t.Errorf("%s: reply % X, want % X", c.name, got, want)
		}
	}
	if st := u.Stats(); st.Exceptions != uint64(len(cases)) || st.Replies != uint64(len(cases)) {
		t.Errorf("unit stats %+v, want %d exceptions", st, len(cases))
	}
	if st := r.srv.Stats(); st.Exceptions != uint64(len(cases)) {
		t.Errorf("server stats %+v, want %d exceptions", st, len(cases))
	}
}

// read1 is a request for holding register 0 of unit id.
func read1(id byte) []byte {
	return modbus.AppendCRC([]byte{id, 0x03, 0, 0, 0, 1})
}

func reply1(id byte, v uint16) []byte {
	return modbus.AppendCRC([]byte{id, 0x03, 2, byte(v >> 8), byte(v)})
}

func addUnits(t *testing.T, srv *Server, ids ...byte) []*Unit {
	t.Helper()
	var us []*Unit
	for _, id := range ids {
		u, err := srv.AddUnit(id, Sizes{HoldingRegisters: 4})
		must(t, err)
		must(t, u.WriteHolding(0, 0x100+uint16(id)))
		us = append(us, u)
	}
	return us
}

func TestOtherUnitsIgnored(t *testing.T) {
	r := newRig(t, Line{Baud: 115200})
	us := addUnits(t, r.srv, 1, 2, 3)
	// Unit 9 is not on the line: if anything answered it, that answer
	// would come before unit 2's.
	r.write(t, read1(9))
	if got, want := r.transact(t, read1(2), 7), reply1(2, 0x102); !bytes.Equal(got, want) {
		t.Fatalf("reply % X, want unit 2's % X", got, want)
	}
	if st := r.srv.Stats(); st.Ignored != 1 || st.Requests != 1 || st.Replies != 1 {
		t.Errorf("server stats %+v, want 1 ignored, 1 request, 1 reply", st)
	}
	for _, u := range us {
		st := u.Stats()
		wantIgnored := uint64(2)
		if u.ID() == 2 {
			wantIgnored = 1
		}
		if st.Ignored != wantIgnored {
			t.Errorf("unit %d ignored %d frames, want %d", u.ID(), st.Ignored, wantIgnored)
		}
	}
}

func TestBroadcastWriteNoReply(t *testing.T) {
	r := newRig(t, Line{Baud: 115200})
	us := addUnits(t, r.srv, 1, 2, 3)
	us[1].SetOffline(true)
	r.write(t, modbus.AppendCRC([]byte{0, 0x06, 0, 2, 0, 3}))
	r.write(t, modbus.AppendCRC([]byte{0, 0x10, 0, 1, 0, 1, 2, 0x12, 0x34}))
	// The first bytes back must be the answer to this read, not to a broadcast.
	req := modbus.AppendCRC([]byte{3, 0x03, 0, 1, 0, 2})
	want := modbus.AppendCRC([]byte{3, 0x03, 4, 0x12, 0x34, 0, 3})
	if got := r.transact(t, req, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("reply % X, want % X", got, want)
	}
	for _, u := range us {
		got, _ := u.ReadHolding(1, 2)
		want := []uint16{0x1234, 3}
		if u.Offline() {
			want = []uint16{0, 0}
		}
		if !equal(got, want) {
			t.Errorf("unit %d registers 1..2 = %04X, want %04X", u.ID(), got, want)
		}
	}
	if st := r.srv.Stats(); st.Broadcasts != 2 || st.Replies != 1 {
		t.Errorf("server stats %+v, want 2 broadcasts and 1 reply", st)
	}
	if st := us[0].Stats(); st.Broadcasts != 2 || st.Replies != 0 {
		t.Errorf("unit 1 stats %+v, want 2 broadcasts, no reply", st)
	}
}

func TestCRCGarbageResynchronised(t *testing.T) {
	r := newRig(t, Line{Baud: 115200})
	us := addUnits(t, r.srv, 1, 2)
	bad := read1(1)
	bad[7] ^= 0x55
	var stream []byte
	stream = append(stream, bad...)
	stream = append(stream, 0xFF, 0x00, 0x03, 0x99, 0x01)
	stream = append(stream, read1(2)...)
	if got, want := r.transact(t, stream, 7), reply1(2, 0x102); !bytes.Equal(got, want) {
		t.Fatalf("reply % X, want % X", got, want)
	}
	st := r.srv.Stats()
	if st.CRCErrors != 1 {
		t.Errorf("server counted %d CRC errors, want 1 (one bad frame, then resynchronisation)", st.CRCErrors)
	}
	if st.DroppedBytes != uint64(len(bad)+5) {
		t.Errorf("server dropped %d bytes, want %d", st.DroppedBytes, len(bad)+5)
	}
	if us[0].Stats().CRCErrors != 1 || us[0].Stats().Replies != 0 {
		t.Errorf("unit 1 stats %+v, want 1 CRC error and no reply", us[0].Stats())
	}
	// In sync again: the next frame is served at once.
	if got, want := r.transact(t, read1(1), 7), reply1(1, 0x101); !bytes.Equal(got, want) {
		t.Fatalf("reply % X, want % X", got, want)
	}
}

func TestStaleFragmentDropped(t *testing.T) {
	srv, err := NewServer(Config{Line: Line{Baud: 115200}, StaleTimeout: 20 * time.Millisecond})
	must(t, err)
	r := serveRig(t, srv)
	addUnits(t, srv, 1)
	// An unknown function without its CRC: the framer waits for the rest,
	// which never comes, until the fragment goes stale.
	r.write(t, []byte{0x01, 0x41, 0x02})
	time.Sleep(50 * time.Millisecond)
	if got, want := r.transact(t, read1(1), 7), reply1(1, 0x101); !bytes.Equal(got, want) {
		t.Fatalf("reply % X, want % X", got, want)
	}
	if st := srv.Stats(); st.DroppedBytes != 3 {
		t.Errorf("dropped %d bytes, want the 3 of the fragment", st.DroppedBytes)
	}
}

func TestOfflineSlowCorrupt(t *testing.T) {
	r := newRig(t, Line{Baud: 115200})
	us := addUnits(t, r.srv, 1, 2)

	us[0].SetOffline(true)
	r.write(t, read1(1))
	if got, want := r.transact(t, read1(2), 7), reply1(2, 0x102); !bytes.Equal(got, want) {
		t.Fatalf("with unit 1 offline: reply % X, want unit 2's % X", got, want)
	}
	us[0].SetOffline(false)
	if got, want := r.transact(t, read1(1), 7), reply1(1, 0x101); !bytes.Equal(got, want) {
		t.Fatalf("unit 1 back online: reply % X, want % X", got, want)
	}

	us[1].CorruptNext(2)
	for i := 0; i < 2; i++ {
		got := r.transact(t, read1(2), 7)
		if modbus.CheckCRC(got) || !bytes.Equal(got[:5], reply1(2, 0x102)[:5]) {
			t.Fatalf("corrupted reply %d: % X, want unit 2's reply with a bad CRC", i, got)
		}
	}
	if got := r.transact(t, read1(2), 7); !modbus.CheckCRC(got) {
		t.Fatalf("third reply % X still corrupt", got)
	}

	const delay = 30 * time.Millisecond
	us[1].SetDelay(delay)
	start := time.Now()
	r.transact(t, read1(2), 7)
	if el, min := time.Since(start), r.srv.Line().WireTime(15)+r.srv.Line().T35()+delay; el < min {
		t.Errorf("slow unit answered after %v, want at least %v", el, min)
	}
}

func TestReplyNotBeforeWireTime(t *testing.T) {
	line := Line{Baud: 9600, CharBits: 11}
	r := newRig(t, line)
	addUnits(t, r.srv, 1)
	req := modbus.AppendCRC([]byte{1, 0x03, 0, 0, 0, 4})
	// Request 8 bytes, reply 13: 21 characters plus t3.5 = 28.1 ms at 9600 8N2.
	min := line.WireTime(8) + line.T35() + line.WireTime(13)
	for i := 0; i < 3; i++ {
		start := time.Now()
		r.transact(t, req, 13)
		if el := time.Since(start); el < min {
			t.Fatalf("reply after %v, before the line could carry it (%v)", el, min)
		}
		time.Sleep(line.T35())
	}
	if st := r.srv.Stats(); st.T35Violations != 0 {
		t.Errorf("%d t3.5 violations counted for a master that keeps the silence", st.T35Violations)
	}
}

func TestT35ViolationCounted(t *testing.T) {
	line := Line{Baud: 9600}
	r := newRig(t, line)
	us := addUnits(t, r.srv, 1)
	// Two requests back to back: the second starts with no silence at all
	// after the first's reply.
	start := time.Now()
	r.write(t, append(read1(1), read1(1)...))
	r.read(t, 14)
	// The second request could only start on the wire after the first
	// reply, so both exchanges took their full time one after the other.
	if el, min := time.Since(start), 2*(line.WireTime(8)+line.T35()+line.WireTime(7)); el < min {
		t.Errorf("two back-to-back exchanges took %v, less than the line allows (%v)", el, min)
	}
	if st := r.srv.Stats(); st.T35Violations != 1 || st.Replies != 2 {
		t.Errorf("server stats %+v, want 1 t3.5 violation and 2 replies", st)
	}
	if st := us[0].Stats(); st.T35Violations != 1 {
		t.Errorf("unit stats %+v, want 1 t3.5 violation", st)
	}
}

func TestServeEndsWhenUnplugged(t *testing.T) {
	srv, err := NewServer(Config{Line: Line{Baud: 115200}})
	must(t, err)
	addUnits(t, srv, 1)
	p, err := ptypair.Open("")
	must(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), p.Master) }()
	p.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Serve returned nil after the pty went away, want the read error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the pty was closed")
	}
}

func TestServeEndsWithContext(t *testing.T) {
	r := newRig(t, Line{})
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Serve returned %v after its context ended, want nil", err)
		}
		r.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	// A second Serve on the same pty works: the read deadline was cleared.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.Serve(ctx, r.pair.Master) }()
	addUnits(t, r.srv, 1)
	if got, want := r.transact(t, read1(1), 7), reply1(1, 0x101); !bytes.Equal(got, want) {
		t.Errorf("reply % X, want % X", got, want)
	}
	cancel()
	<-done
}

func TestAddUnitErrors(t *testing.T) {
	srv, err := NewServer(Config{Name: "rs485-9"})
	must(t, err)
	for _, c := range []struct {
		id   byte
		sz   Sizes
		want string
	}{
		{0, Sizes{}, "unit address 0"},
		{248, Sizes{}, "unit address 248"},
		{1, Sizes{HoldingRegisters: -1}, "table size -1"},
	} {
		if _, err := srv.AddUnit(c.id, c.sz); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "rs485-9") {
			t.Errorf("AddUnit(%d, %+v) = %v, want an error naming the line and %q", c.id, c.sz, err, c.want)
		}
	}
	_, err = srv.AddUnit(5, Sizes{})
	must(t, err)
	if _, err := srv.AddUnit(5, Sizes{}); err == nil {
		t.Error("AddUnit accepted unit 5 twice")
	}
	if _, err := NewServer(Config{Line: Line{Baud: 12}}); err == nil || !strings.Contains(err.Error(), "baud 12") {
		t.Errorf("NewServer with baud 12: %v", err)
	}
	u := srv.Unit(5)
	if _, err := u.ReadHolding(0, 1); err == nil || !strings.Contains(err.Error(), "unit 5") {
		t.Errorf("ReadHolding outside an empty table: %v", err)
	}
}

func TestLineTiming(t *testing.T) {
	for _, c := range []struct {
		line      Line
		char, t35 time.Duration
	}{
		{Line{Baud: 9600}, 1145833 * time.Nanosecond, 4010416 * time.Nanosecond},
		{Line{Baud: 19200}, 572916 * time.Nanosecond, 2005208 * time.Nanosecond},
		{Line{Baud: 9600, CharBits: 10}, 1041666 * time.Nanosecond, 3645833 * time.Nanosecond},
		{Line{Baud: 38400}, 286458 * time.Nanosecond, 1750 * time.Microsecond},
		{Line{Baud: 115200}, 95486 * time.Nanosecond, 1750 * time.Microsecond},
	} {
		if got := c.line.CharTime(); got != c.char {
			t.Errorf("%+v: char time %v, want %v", c.line, got, c.char)
		}
		if got := c.line.T35(); got != c.t35 {
			t.Errorf("%+v: t3.5 %v, want %v", c.line, got, c.t35)
		}
	}
	// PROTOCOLS.md: reading 10 registers at 9600 8N2 takes 37.8 ms on the
	// wire, 45.8 ms with both silences.
	l := Line{Baud: 9600}
	if got := l.MinTransaction(8, ReplyLen(FuncReadHoldingRegisters, 10)); got.Round(100*time.Microsecond) != 45800*time.Microsecond {
		t.Errorf("minimum transaction for 10 registers at 9600: %v, want 45.8ms", got)
	}
}

func TestServeAnyReadWriter(t *testing.T) {
	srv, err := NewServer(Config{Line: Line{Baud: 115200}})
	must(t, err)
	addUnits(t, srv, 4)
	master, line := net.Pipe()
	defer master.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, line) }()
	if _, err := master.Write(read1(4)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 7)
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(master, got); err != nil {
		t.Fatal(err)
	}
	if want := reply1(4, 0x104); !bytes.Equal(got, want) {
		t.Errorf("reply % X, want % X", got, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve returned %v after its context ended", err)
	}
}

// Line noise changes reply bytes with the set chance, counts them, and
// ends when set to 0; with chance 1 no byte of a reply survives.
func TestLineNoise(t *testing.T) {
	r := newRig(t, Line{Baud: 115200})
	addUnits(t, r.srv, 1)
	want := reply1(1, 0x101)

	r.srv.SetNoise(1, 7)
	got := r.transact(t, read1(1), len(want))
	for i := range want {
		if got[i] == want[i] {
			t.Fatalf("noise 1: byte %d of % X unchanged (clean % X)", i, got, want)
		}
	}
	if n := r.srv.NoiseBytes(); n != uint64(len(want)) {
		t.Fatalf("noise 1: %d bytes counted, want %d", n, len(want))
	}

	r.srv.SetNoise(0.2, 7)
	hit := 0
	for range 50 {
		if got := r.transact(t, read1(1), len(want)); !bytes.Equal(got, want) {
			hit++
		}
	}
	// 7 bytes at 20%: a reply stays clean with chance 0.8^7 = 21%.
	if hit < 20 || hit == 50 {
		t.Fatalf("noise 0.2: %d of 50 replies hit, want most but not all", hit)
	}

	r.srv.SetNoise(0, 0)
	before := r.srv.NoiseBytes()
	if got := r.transact(t, read1(1), len(want)); !bytes.Equal(got, want) || r.srv.NoiseBytes() != before {
		t.Fatalf("noise off: reply % X, want % X", got, want)
	}
}
