package simgpio

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/internal/testenv"
)

// sim starts a server on a fresh socket; stop ends it and waits.
func sim(t *testing.T, path string, lines ...string) (s *Server, stop func()) {
	t.Helper()
	s, err := NewServer(lines, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return s, stop
}

func socket(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "simgpio-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "gpio.sock")
}

func TestInputEdgesKeepTheSimulatorsTimes(t *testing.T) {
	path := socket(t)
	s, _ := sim(t, path, "gpiochip0:22", "gpiochip0:17")
	c := Dial(path, ClientOptions{})
	defer c.Close()
	p, err := c.Open("gpiochip0:22")
	if err != nil {
		t.Fatal(err)
	}
	if p.Read() != gpio.High || p.Number() != 22 {
		t.Fatalf("level %v number %d: want the idle high line 22", p.Read(), p.Number())
	}
	if err := p.In(gpio.PullUp, gpio.FallingEdge); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	if err := s.Drive("gpiochip0:22", gpio.Low); err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Microsecond)
	s.Drive("gpiochip0:22", gpio.High) // a rising edge: not queued
	s.Drive("gpiochip0:22", gpio.Low)
	if !p.WaitForEdge(10 * time.Second) {
		t.Fatal("no edge")
	}
	first := p.(*Pin).LastEdge()
	if !p.WaitForEdge(10 * time.Second) {
		t.Fatal("no second edge")
	}
	second := p.(*Pin).LastEdge()
	if first.Before(before.Add(-time.Millisecond)) || !second.After(first) || second.Sub(first) < 80*time.Microsecond {
		t.Errorf("edge times %v, %v: want the simulator's times, 80µs+ apart, after %v", first, second, before)
	}
	if p.WaitForEdge(0) {
		t.Error("the rising edge was queued on a falling-edge line")
	}
	testenv.WaitFor(t, 5*time.Second, "level low", func() bool { return p.Read() == gpio.Low })
}

func TestOutputsReachTheSimulator(t *testing.T) {
	path := socket(t)
	s, _ := sim(t, path, "strike")
	c := Dial(path, ClientOptions{})
	defer c.Close()
	p, err := c.Open("strike")
	if err != nil {
		t.Fatal(err)
	}
	if q, _ := c.Open("strike"); q != p {
		t.Error("opening a line twice gave two pins")
	}
	for _, l := range []gpio.Level{gpio.Low, gpio.High, gpio.Low} {
		if err := p.Out(l); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 5*time.Second, "three outputs", func() bool { return len(s.Outputs("strike")) == 3 })
	outs := s.Outputs("strike")
	if outs[0].Level != gpio.Low || outs[1].Level != gpio.High || outs[2].Level != gpio.Low || outs[2].Time.Before(outs[1].Time) {
		t.Errorf("outputs %v: want low, high, low in time order", outs)
	}
	if l, _ := s.Level("strike"); l != gpio.Low {
		t.Errorf("simulator level %v", l)
	}
}

func TestLineNotServedNamesIt(t *testing.T) {
	path := socket(t)
	sim(t, path, "gpiochip0:17", "gpiochip0:22")
	c := Dial(path, ClientOptions{})
	defer c.Close()
	_, err := c.Open("gpiochip0:99")
	if !errors.Is(err, ErrNotServed) || !strings.Contains(err.Error(), `"gpiochip0:99"`) || !strings.Contains(err.Error(), "gpiochip0:17, gpiochip0:22") {
		t.Fatalf("err = %v: want ErrNotServed naming the line and the served ones", err)
	}
}

func TestNoSimulatorIsAClearError(t *testing.T) {
	path := socket(t)
	c := Dial(path, ClientOptions{Wait: 200 * time.Millisecond})
	defer c.Close()
	_, err := c.Open("GPIO17")
	if err == nil || !strings.Contains(err.Error(), `"GPIO17"`) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v: want the line and the socket named", err)
	}
}

// The simulator restarts: the gateway's output level is written again, and
// an input that changed meanwhile gives an edge.
func TestReconnectAfterSimulatorRestart(t *testing.T) {
	path := socket(t)
	_, stop := sim(t, path, "strike", "contact")
	c := Dial(path, ClientOptions{})
	defer c.Close()
	strike, err := c.Open("strike")
	if err != nil {
		t.Fatal(err)
	}
	contact, err := c.Open("contact")
	if err != nil {
		t.Fatal(err)
	}
	contact.In(gpio.PullUp, gpio.BothEdges)
	if err := strike.Out(gpio.High); err != nil {
		t.Fatal(err)
	}
	stop()
	testenv.WaitFor(t, 5*time.Second, "link down", func() bool { return strike.Out(gpio.Low) != nil })
	s2, _ := sim(t, path, "strike", "contact")
	testenv.WaitFor(t, 10*time.Second, "the strike level written again", func() bool {
		outs := s2.Outputs("strike")
		return len(outs) == 1 && outs[0].Level == gpio.Low
	})
	s2.Drive("contact", gpio.Low)
	if !contact.WaitForEdge(10 * time.Second) {
		t.Fatal("no edge after reconnect")
	}
	if contact.Read() != gpio.Low {
		t.Error("contact level not taken")
	}
}

func TestServerDropsBadClient(t *testing.T) {
	path := socket(t)
	s, _ := sim(t, path, "a")
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	n, _ := conn.Read(buf)
	if m, err := Decode([]byte(strings.TrimSpace(string(buf[:n])))); err != nil || m.Op != OpHello || len(m.Lines) != 1 {
		t.Fatalf("hello %q: %v", buf[:n], err)
	}
	conn.Write([]byte(`{"op":"level","line":"a","level":"low","t":1}` + "\n"))
	testenv.WaitFor(t, 5*time.Second, "bad client dropped", func() bool { return s.Connected() == 0 })
}
