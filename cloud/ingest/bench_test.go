package ingest_test

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// BenchmarkIngestEndToEnd measures gateway publish → Mosquitto → cloudd
// (validate, sequence check, line protocol) → InfluxDB write acknowledged
// → PUBACK, in points per second. Each message carries 100 records.
func BenchmarkIngestEndToEnd(b *testing.B) {
	broker := testenv.Mosquitto(b)
	influx, db := testenv.NewDatabase(b)
	r := startIngest(b, ingest.Config{BrokerURL: broker.URL(), ClientID: "cloudd-bench", Group: "cloudd"}, influx.URL, db, nil)
	g := connectGateway(b, broker.URL(), "harbor", "gw-1", "", "")
	const per = 100
	base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	bodies := make([][]byte, b.N)
	for n := range bodies {
		recs := make([]payload.Record, per)
		for i := range recs {
			t := base.Add(time.Duration(n) * time.Millisecond)
			if i%2 == 0 {
				recs[i] = pv(fmt.Sprintf("inv-%d", i), float64(n), t)
			} else {
				recs[i] = bay(fmt.Sprintf("bay-%d", i), "north", "a", n%3 == 0, t)
			}
		}
		bodies[n] = g.batch(uint64(n+1), payload.Telemetry, recs...)
	}
	topic := payload.TopicFor("harbor", "gw-1", payload.Telemetry)
	before := r.in.Stats().Written
	b.ResetTimer()
	start := time.Now()
	toks := make([]mqtt.Token, 0, 64)
	for _, body := range bodies {
		toks = append(toks, g.c.Publish(topic, 1, false, body))
		if len(toks) == cap(toks) {
			for _, tk := range toks {
				tk.Wait()
			}
			toks = toks[:0]
		}
	}
	for _, tk := range toks {
		tk.Wait()
	}
	waitFor(b, 5*time.Minute, "all messages written", func() bool { return r.in.Stats().Written-before == uint64(b.N) })
	el := time.Since(start)
	b.StopTimer()
	st := r.in.Stats()
	b.ReportMetric(float64(st.Points)/el.Seconds(), "points/s")
	b.ReportMetric(float64(b.N*per)/el.Seconds(), "records/s")
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(st.Requests), "influx-requests")
}
