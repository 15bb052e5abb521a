package lane

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/luling-edge/luling/drivers/gpio"
)

// Inputs are a lane's GPIO inputs. Arming and Safety are required (active
// = a vehicle on the loop); Opened and Closed are the barrier's position
// inputs (active = at that position), either may be nil.
type Inputs struct {
	Arming, Safety, Opened, Closed *gpio.Input
}

// Run watches the lane's inputs and runs its timeouts every 100 ms of
// its clock until ctx ends. It waits for pending reader feedback on
// return.
func (l *Lane) Run(ctx context.Context, in Inputs) error {
	if in.Arming == nil || in.Safety == nil {
		return fmt.Errorf("lane %s: arming and safety loop inputs are required", l.cfg.Name)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	watch := func(input *gpio.Input, handle func(on bool)) {
		if input == nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- input.Run(ctx, func(on bool, _ time.Time) { handle(on) })
		}()
	}
	watch(in.Arming, func(on bool) { l.Arming(ctx, on) })
	watch(in.Safety, func(on bool) { l.Safety(ctx, on) })
	watch(in.Opened, func(on bool) { l.Position(ctx, true, on) })
	watch(in.Closed, func(on bool) { l.Position(ctx, false, on) })
	tick := l.clk.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		case e := <-errs:
			if e != nil && ctx.Err() == nil {
				err = fmt.Errorf("lane %s: %w", l.cfg.Name, e)
				break loop
			}
		case <-tick.C():
			l.Tick(ctx)
		}
	}
	cancel()
	wg.Wait()
	l.wg.Wait()
	return err
}
