package access_test

import (
	"context"
	"sort"
	"strconv"
	"testing"
	"time"

	pgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio"
	"github.com/luling-edge/luling/drivers/gpio/vpin"
	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/gateway/outbox"
	"github.com/luling-edge/luling/payload"
)

// BenchmarkCardToStrike measures from a completed card read to the strike
// output being energized, without the Wiegand line time, against a set of
// 10,000 credentials: "decision" with the access record handed to Emit
// (target p99 ≤ 5 ms), "durable" with the record made durable first, as
// the gateway does (Config.Record appending to a real outbox on this
// machine's disk with AppendNow: one fsync before the strike).
func BenchmarkCardToStrike(b *testing.B) {
	for _, durable := range []bool{false, true} {
		b.Run(map[bool]string{false: "decision", true: "durable"}[durable], func(b *testing.B) {
			benchCardToStrike(b, durable)
		})
	}
}

func benchCardToStrike(b *testing.B, durable bool) {
	store := openStore(b, b.TempDir())
	creds := make([]access.Credential, 10000)
	for i := range creds {
		creds[i] = access.Credential{ID: "emp-" + strconv.Itoa(i), Card: "100:" + strconv.Itoa(i),
			Schedule: []access.Window{{Days: []time.Weekday{0, 1, 2, 3, 4, 5, 6}, From: 0, Until: 1440}}}
	}
	mustSync(b, store, 1, creds...)
	pin := vpin.New("strike", 1, nil)
	strike, err := gpio.NewOutput(pin, gpio.OutputConfig{Name: "strike"})
	if err != nil {
		b.Fatal(err)
	}
	cfg := access.Config{Name: "lobby", Store: store, Strike: strike, UnlockTime: 5 * time.Minute, Emit: func(payload.Record) {}}
	if durable {
		ob, err := outbox.Open(outbox.Options{Dir: b.TempDir(), Site: "s", Gateway: "g", CommitInterval: 10 * time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		defer ob.Close()
		cfg.Record = func(ctx context.Context, r payload.Record) error {
			return ob.AppendNow(ctx, payload.Event, []payload.Record{r})
		}
	}
	door, err := access.NewDoor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = strike.Set(false)
		start := time.Now()
		dec := door.Present(ctx, access.Read{Reader: "r", Card: "100:" + strconv.Itoa(i%len(creds)), Time: start})
		on := pin.Last()
		if !dec.Granted || on.Level != pgpio.High {
			b.Fatalf("denied (%s) or strike not on", dec.Reason)
		}
		lat = append(lat, on.Time.Sub(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
}
