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
	"github.com/luling-edge/luling/payload"
)

// BenchmarkCardToStrike measures from a completed card read to the strike
// output being energized, without the Wiegand line time, against a set of
// 10,000 credentials. Target: p99 ≤ 5 ms.
func BenchmarkCardToStrike(b *testing.B) {
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
	door, err := access.NewDoor(access.Config{Name: "lobby", Store: store, Strike: strike, UnlockTime: 5 * time.Minute, Emit: func(payload.Record) {}})
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
