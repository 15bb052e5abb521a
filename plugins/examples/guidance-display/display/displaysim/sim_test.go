package displaysim_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/luling-edge/luling/plugins/examples/guidance-display/display"
	"github.com/luling-edge/luling/plugins/examples/guidance-display/display/displaysim"
)

func frame(t *testing.T, f display.Frame) []byte {
	t.Helper()
	b, err := display.Append(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The simulator reassembles frames from a byte stream: noise before a
// frame, a frame split across writes, two frames in one write, a broadcast
// (no reply) and a frame with a bad checksum (a NAK).
func TestServeStream(t *testing.T) {
	sim := displaysim.New(1, 2)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- sim.Serve(struct {
			io.Reader
			io.Writer
		}{inR, outW})
	}()

	q1 := frame(t, display.Frame{Addr: 1, Cmd: 'Q'})
	d2 := frame(t, display.Frame{Addr: 2, Cmd: 'D', Data: "0077"})
	all := frame(t, display.Frame{Addr: 0, Cmd: 'B', Data: "03"})
	bad := []byte("\x0202QFF\x03")
	writes := [][]byte{append([]byte("\xff\x00noise"), q1[:3]...), q1[3:], append(append(all, d2...), bad...)}
	go func() {
		for _, w := range writes {
			inW.Write(w)
		}
	}()
	want := [][]byte{
		frame(t, display.Frame{Addr: 1, Cmd: 'q', Data: "----,08,+215,00"}),
		frame(t, display.Frame{Addr: 2, Cmd: 'd', Data: "0077"}),
		frame(t, display.Frame{Addr: 2, Cmd: 'N', Data: "01"}),
	}
	for _, w := range want {
		got := make([]byte, len(w))
		if _, err := io.ReadFull(outR, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("reply %q, want %q", got, w)
		}
	}
	inW.Close()
	if err := <-done; err != io.EOF {
		t.Errorf("Serve returned %v, want EOF", err)
	}
	if st := sim.Get(1); st.Brightness != 3 {
		t.Errorf("broadcast brightness not applied: %+v", st)
	}
	if st := sim.Get(2); st.Shown != 77 || st.Brightness != 3 {
		t.Errorf("display 2: %+v", st)
	}
	if n, bad := sim.Counts(); n != 4 || bad != 1 {
		t.Errorf("counts %d frames, %d bad; want 4, 1", n, bad)
	}
}

func TestHandleRefusals(t *testing.T) {
	sim := displaysim.New(5)
	for _, c := range []struct {
		req  display.Frame
		want string
	}{
		{display.Frame{Addr: 5, Cmd: 'Z'}, "02"},
		{display.Frame{Addr: 5, Cmd: 'D', Data: "12"}, "03"},
		{display.Frame{Addr: 5, Cmd: 'B', Data: "16"}, "03"},
		{display.Frame{Addr: 5, Cmd: 'Q', Data: "x"}, "03"},
	} {
		got, err := display.Decode(sim.Handle(frame(t, c.req)))
		if err != nil || got.Cmd != 'N' || got.Data != c.want {
			t.Errorf("%+v: reply %+v, %v; want N %s", c.req, got, err, c.want)
		}
	}
	if r := sim.Handle(frame(t, display.Frame{Addr: 6, Cmd: 'Q'})); r != nil {
		t.Errorf("another address answered: %q", r)
	}
}
