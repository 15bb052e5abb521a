package lane_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/gateway/lane"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// signWriter is a sign that refuses writes while down.
type signWriter struct {
	mu     sync.Mutex
	down   bool
	shown  []int64
	points []string
}

func (w *signWriter) Write(_ context.Context, point string, v payload.Value) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.down {
		return errors.New("sign offline")
	}
	w.shown = append(w.shown, v.Int())
	w.points = append(w.points, point)
	return nil
}

func (w *signWriter) last() (int64, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.shown) == 0 {
		return -1, 0
	}
	return w.shown[len(w.shown)-1], len(w.shown)
}

// The sign shows the free count at start and after every change, the
// latest one only after it was offline, and 0 when the lot is full.
func TestSignFollowsTheCount(t *testing.T) {
	lot, err := lane.OpenLot("", "p1", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &signWriter{}
	s := &lane.Sign{Device: "sign-gate", Point: "free", W: w, RetryEvery: 10 * time.Millisecond}
	s.Watch(lot)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	now := time.Now()
	testenv.WaitFor(t, 10*time.Second, "the free count at start", func() bool { v, _ := w.last(); return v == 3 })
	lot.Add(1, now)
	testenv.WaitFor(t, 10*time.Second, "2 free", func() bool { v, _ := w.last(); return v == 2 })
	w.mu.Lock()
	w.down = true
	w.mu.Unlock()
	lot.Add(1, now)
	lot.Add(1, now)
	lot.Add(1, now) // over capacity: a tailgater
	w.mu.Lock()
	w.down = false
	w.mu.Unlock()
	testenv.WaitFor(t, 10*time.Second, "FULL (0 free) after the sign came back", func() bool { v, _ := w.last(); return v == 0 })
	if _, n := w.last(); n > 4 {
		t.Errorf("%d writes for 5 counts with the sign down for three: %v", n, w.shown)
	}
	if w.points[0] != "free" {
		t.Errorf("wrote point %s", w.points[0])
	}
}
