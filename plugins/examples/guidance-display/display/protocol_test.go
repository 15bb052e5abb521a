package display_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/luling-edge/luling/plugins/examples/guidance-display/display"
)

func TestAppendGolden(t *testing.T) {
	// "01D0042": '0'=30 '1'=31 'D'=44 '0'=30 '0'=30 '4'=34 '2'=32,
	// sum 0x16B → 6B.
	got, err := display.Append(nil, display.Frame{Addr: 1, Cmd: 'D', Data: "0042"})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("\x0201D00426B\x03")
	if string(got) != string(want) {
		t.Fatalf("Append = %q, want %q", got, want)
	}
	q, _ := display.Append(nil, display.Frame{Addr: 0x1F, Cmd: 'Q'})
	// '1'=31 'F'=46 'Q'=51 → C8
	if string(q) != "\x021FQC8\x03" {
		t.Fatalf("query = %q", q)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, f := range []display.Frame{
		{Addr: 1, Cmd: 'Q'},
		{Addr: 0xFE, Cmd: 'q', Data: "0123,07,+245,00"},
		{Addr: 0, Cmd: 'D', Data: "9999"},
		{Addr: 7, Cmd: 'N', Data: "02"},
	} {
		b, err := display.Append(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := display.Decode(b)
		if err != nil || got != f {
			t.Errorf("Decode(Append(%+v)) = %+v, %v", f, got, err)
		}
	}
}

func TestAppendRefuses(t *testing.T) {
	for _, c := range []struct {
		f    display.Frame
		want string
	}{
		{display.Frame{Addr: 255, Cmd: 'Q'}, "address 255"},
		{display.Frame{Addr: 1, Cmd: '1'}, "not a letter"},
		{display.Frame{Addr: 1, Cmd: 'D', Data: "a\x03"}, "not printable"},
		{display.Frame{Addr: 1, Cmd: 'D', Data: strings.Repeat("1", 33)}, "33 data bytes"},
	} {
		if _, err := display.Append(nil, c.f); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Append(%+v) = %v, want an error containing %q", c.f, err, c.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		{"\x0201Q", "4 bytes"},
		{"x01QC8\x03", "byte 0"},
		{"\x0201QC8x", "want ETX"},
		{"\x02g1QC8\x03", "address \"g1\""},
		{"\x0201Qzz\x03", "checksum \"zz\""},
		{"\x0201QC9\x03", "checksum B2, frame says C9"},
		{"\x0201q\x01D3\x03", "not printable"},
	} {
		_, err := display.Decode([]byte(c.in))
		if err == nil || !errors.Is(err, display.ErrFrame) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Decode(%q) = %v, want ErrFrame containing %q", c.in, err, c.want)
		}
	}
}

func TestStatus(t *testing.T) {
	st := display.Status{Shown: 42, Brightness: 7, TempC: -3.5, Faults: display.FaultOverTemp}
	data := display.FormatStatus(st)
	if data != "0042,07,-035,02" {
		t.Fatalf("FormatStatus = %q", data)
	}
	got, err := display.ParseStatus(data)
	if err != nil || got != st {
		t.Fatalf("ParseStatus(%q) = %+v, %v", data, got, err)
	}
	blank, err := display.ParseStatus("----,15,+250,00")
	if err != nil || !blank.Blank || blank.Brightness != 15 || blank.TempC != 25 {
		t.Fatalf("blank status = %+v, %v", blank, err)
	}
	for _, c := range []struct{ in, want string }{
		{"0042,07,-035", "3 fields"},
		{"04x2,07,-035,02", "count"},
		{"0042,16,-035,02", "brightness"},
		{"0042,07,035,02", "temperature"},
		{"0042,07,-035,0g", "faults"},
	} {
		if _, err := display.ParseStatus(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseStatus(%q) = %v, want an error about %s", c.in, err, c.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("\x0201D00426B\x03"))
	f.Add([]byte("\x021FQC8\x03"))
	f.Add([]byte("\x0201q0123,07,+245,00F0\x03"))
	f.Add([]byte("\x0201QC9\x03"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := display.Decode(b)
		if err != nil {
			if !errors.Is(err, display.ErrFrame) {
				t.Fatalf("error %v does not wrap ErrFrame", err)
			}
			return
		}
		again, err := display.Append(nil, fr)
		if err != nil {
			t.Fatalf("decoded %+v cannot be encoded: %v", fr, err)
		}
		if string(again) != string(b) {
			t.Fatalf("re-encoded %q, want %q", again, b)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add("0042,07,-035,02")
	f.Add("----,15,+250,00")
	f.Add("9999,00,+999,FF")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := display.ParseStatus(s)
		if err != nil {
			return
		}
		if got := display.FormatStatus(st); got != s {
			t.Fatalf("FormatStatus(ParseStatus(%q)) = %q", s, got)
		}
	})
}
