package simgpio

import (
	"context"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/wiegand"
	"github.com/luling-edge/luling/internal/testenv"
)

// Wiegand frames cross the link intact: the reader takes the simulator's
// edge times (LastEdge), so the 80 µs pulses and 1 ms gaps are judged as
// they happened, not as late as the socket delivered them.
func TestWiegandAcrossTheLink(t *testing.T) {
	path := socket(t)
	s, _ := sim(t, path, "GPIO5", "GPIO6")
	c := Dial(path, ClientOptions{})
	defer c.Close()
	d0, err := c.Open("GPIO5")
	if err != nil {
		t.Fatal(err)
	}
	d1, err := c.Open("GPIO6")
	if err != nil {
		t.Fatal(err)
	}
	r, err := wiegand.New(wiegand.Config{Name: "bench", D0: d0, D1: d1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cards := make(chan string, 4)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, func(c wiegand.Card, _ time.Time) { cards <- c.ID() }) }()
	defer func() { cancel(); <-done }()
	// The reader configures its lines before it counts edges.
	testenv.WaitFor(t, 5*time.Second, "the reader's lines as inputs", func() bool {
		return d0.(*Pin).Function() == string(gpio.IN) && d1.(*Pin).Function() == string(gpio.IN)
	})
	v, n, err := wiegand.Encode(wiegand.H10301, 123, 45678)
	if err != nil {
		t.Fatal(err)
	}
	for i := n - 1; i >= 0; i-- {
		line := "GPIO5"
		if v>>i&1 == 1 {
			line = "GPIO6"
		}
		s.Drive(line, gpio.Low)
		time.Sleep(80 * time.Microsecond)
		s.Drive(line, gpio.High)
		time.Sleep(time.Millisecond)
	}
	select {
	case id := <-cards:
		if id != "123:45678" {
			t.Errorf("card %s, want 123:45678", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no card; reader stats %+v", r.Stats())
	}
}
