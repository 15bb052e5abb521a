package ingest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// The histogram counts written messages only, by the time from their sent
// time to the write, cumulatively per bucket, and a clock ahead counts as 0.
func TestLatencyHistogram(t *testing.T) {
	now := time.Unix(1000, 0)
	msg := func(ago time.Duration, write bool) item {
		return item{batch: &payload.Batch{Sent: now.Add(-ago)}, write: write}
	}
	var l latency
	l.observe(now, []item{
		msg(5*time.Millisecond, true), msg(300*time.Millisecond, true), msg(300*time.Millisecond, false),
		msg(1500*time.Millisecond, true), msg(-time.Second, true), msg(10*time.Minute, true), {},
	})
	var b bytes.Buffer
	l.write(&b)
	out := b.String()
	for _, want := range []string{
		"# TYPE luling_cloud_ingest_latency_seconds histogram\n",
		`luling_cloud_ingest_latency_seconds_bucket{le="0.01"} 2` + "\n",
		`luling_cloud_ingest_latency_seconds_bucket{le="0.25"} 2` + "\n",
		`luling_cloud_ingest_latency_seconds_bucket{le="0.5"} 3` + "\n",
		`luling_cloud_ingest_latency_seconds_bucket{le="1.5"} 4` + "\n",
		`luling_cloud_ingest_latency_seconds_bucket{le="300"} 4` + "\n",
		`luling_cloud_ingest_latency_seconds_bucket{le="+Inf"} 5` + "\n",
		"luling_cloud_ingest_latency_seconds_sum 601.805\n",
		"luling_cloud_ingest_latency_seconds_count 5\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
