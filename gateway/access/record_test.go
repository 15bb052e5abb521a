package access_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio"
	"github.com/luling-edge/luling/drivers/gpio/vpin"
	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/payload"
)

// With Config.Record, a decision's access record, and an exit request's,
// is stored before the strike moves: when Record runs, the strike is still
// closed, and it opens only after Record returned. A Record that fails
// does not keep the door shut.
func TestAccessRecordStoredBeforeStrike(t *testing.T) {
	store := openStore(t, t.TempDir())
	mustSync(t, store, 1, access.Credential{ID: "alice", Card: "12:3456"})
	pin := vpin.New("strike", 1, nil)
	strike, err := gpio.NewOutput(pin, gpio.OutputConfig{Name: "strike"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string // result and the strike's level when Record ran
	fail := false
	record := func(_ context.Context, r payload.Record) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Tags["reader"]+" "+r.Tags["result"]+" strike="+pin.Read().String())
		if fail {
			return errors.New("outbox full")
		}
		return nil
	}
	emitted := newRecorder()
	door, err := access.NewDoor(access.Config{Name: "lobby", Store: store, Strike: strike, UnlockTime: time.Minute,
		Record: record, Emit: emitted.emit})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	check := func(what string, want string, level pgpio.Level) {
		t.Helper()
		mu.Lock()
		last := seen[len(seen)-1]
		mu.Unlock()
		if last != want {
			t.Errorf("%s: Record saw %q, want %q", what, last, want)
		}
		if got := pin.Read(); got != level {
			t.Errorf("%s: strike %v after the decision, want %v", what, got, level)
		}
	}
	door.Present(ctx, access.Read{Reader: "r1", Card: "99:1"})
	check("unknown card", "r1 denied strike=Low", pgpio.Low)
	door.Present(ctx, access.Read{Reader: "r1", Card: "12:3456"})
	check("alice", "r1 granted strike=Low", pgpio.High)
	_ = strike.Set(false)
	door.Exit(time.Now())
	check("exit", "exit granted strike=Low", pgpio.High)
	_ = strike.Set(false)
	mu.Lock()
	fail = true
	mu.Unlock()
	if dec := door.Present(ctx, access.Read{Reader: "r1", Card: "12:3456"}); !dec.Granted {
		t.Fatalf("alice denied (%s) when the record failed", dec.Reason)
	}
	check("alice, record failing", "r1 granted strike=Low", pgpio.High)
	emitted.none(t) // access records go to Record, not Emit
}
