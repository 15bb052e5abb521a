package wiegand_test

import (
	"context"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/gpio/vpin"
	"github.com/luling-edge/luling/drivers/wiegand"
	"github.com/luling-edge/luling/drivers/wiegand/wiegandsim"
)

type rig struct {
	r     *wiegand.Reader
	gen   *wiegandsim.Generator
	cards chan wiegand.Card
	done  chan error
}

func newRig(t *testing.T) *rig {
	t.Helper()
	d0, d1 := vpin.New("D0", 0, nil), vpin.New("D1", 1, nil)
	// A long frame gap keeps a loaded machine from splitting frames.
	r, err := wiegand.New(wiegand.Config{Name: "door-1", D0: d0, D1: d1, FrameGap: 80 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rg := &rig{r: r, gen: wiegandsim.New(d0, d1), cards: make(chan wiegand.Card, 16), done: make(chan error, 1)}
	go func() { rg.done <- r.Run(ctx, func(c wiegand.Card, _ time.Time) { rg.cards <- c }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-rg.done; err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	// Run sets the lines up; wait until it has (edges before In are dropped).
	for d0.Function() != "IN" || d1.Function() != "IN" {
		time.Sleep(time.Millisecond)
	}
	return rg
}

// waitFrames waits until the reader has finished n frames.
func (rg *rig) waitFrames(t *testing.T, n uint64) wiegand.Stats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := rg.r.Stats()
		if s.Frames >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("reader finished %d frames, want %d", s.Frames, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReaderDecodesCardsAndKeys(t *testing.T) {
	rg := newRig(t)
	ctx := context.Background()
	sends := []struct {
		f      wiegand.Format
		fc, cn uint32
		want   string
	}{
		{wiegand.H10301, 123, 45678, "123:45678"},
		{wiegand.FC34, 5000, 60001, "5000:60001"},
		{wiegand.H10304, 40000, 500000, "40000:500000"},
		{wiegand.Key4, 0, 7, "7"},
		{wiegand.Key8, 0, 11, "#"},
	}
	for i, s := range sends {
		if err := rg.gen.SendCard(ctx, s.f, s.fc, s.cn); err != nil {
			t.Fatal(err)
		}
		rg.waitFrames(t, uint64(i+1))
		select {
		case c := <-rg.cards:
			if c.ID() != s.want || c.Format != s.f {
				t.Errorf("sent %s %s, read %s %s", s.f, s.want, c.Format, c.ID())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no card for %s %s", s.f, s.want)
		}
	}
	st := rg.r.Stats()
	if st.Cards != 3 || st.Keys != 2 || st.Noise() != 0 {
		t.Errorf("stats %+v: want 3 cards, 2 keys, no noise", st)
	}
}

func TestReaderRejectsLineNoise(t *testing.T) {
	rg := newRig(t)
	ctx := context.Background()
	v, n, _ := wiegand.Encode(wiegand.H10301, 123, 45678)
	// Truncated frame (25 bits), a bit flipped, a glitch spike, both lines
	// low at bit 10.
	if err := rg.gen.SendBits(ctx, v>>1, 25); err != nil {
		t.Fatal(err)
	}
	rg.waitFrames(t, 1)
	if err := rg.gen.SendBits(ctx, v^1<<7, n); err != nil {
		t.Fatal(err)
	}
	rg.waitFrames(t, 2)
	if err := rg.gen.SendGlitch(ctx, v, n, 12); err != nil {
		t.Fatal(err)
	}
	rg.waitFrames(t, 3)
	// A both-low frame keeps 26 edges on D0/D1 order but is still noise.
	if err := rg.gen.SendBothLow(ctx, v, n, 10); err != nil {
		t.Fatal(err)
	}
	st := rg.waitFrames(t, 4)
	select {
	case c := <-rg.cards:
		t.Fatalf("line noise decoded into card %s", c.ID())
	default:
	}
	if st.BadLength != 1 || st.BadParity != 1 || st.Glitch != 1 || st.BothLow != 1 || st.Cards != 0 {
		t.Errorf("stats %+v: want one of each rejection and no card", st)
	}
	// The reader still reads a good card afterwards.
	if err := rg.gen.SendCard(ctx, wiegand.H10301, 9, 99); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-rg.cards:
		if c.ID() != "9:99" {
			t.Errorf("read %s, want 9:99", c.ID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no card after the noise")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	d0, d1 := vpin.New("D0", 0, nil), vpin.New("D1", 1, nil)
	for _, cfg := range []wiegand.Config{
		{D0: d0, D1: d1},
		{Name: "x", D0: d0},
		{Name: "x", D0: d0, D1: d1, FrameGap: 2 * time.Second},
	} {
		if _, err := wiegand.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestReaderRejectsEndlessEdges(t *testing.T) {
	rg := newRig(t)
	ctx := context.Background()
	// 70 edges with no frame gap: more than any frame, rejected whole.
	if err := rg.gen.SendBits(ctx, 0x5555555555, 40); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	if err := rg.gen.SendBits(ctx, 0x2AAAAAAA, 30); err != nil {
		t.Fatal(err)
	}
	st := rg.waitFrames(t, 1)
	if st.BadLength != 1 || st.Cards != 0 {
		t.Errorf("stats %+v: want one bad-length frame", st)
	}
}
