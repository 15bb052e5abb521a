package ingest

import (
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"
)

// LatencyBuckets are the upper bounds, in seconds, of the ingest latency
// histogram (luling_cloud_ingest_latency_seconds): from the moment a
// gateway sealed a message (its "sent") to the moment InfluxDB acknowledged
// the write that carried its points. It includes the gateway's and the
// broker's queues, so it is the publish→InfluxDB latency a dashboard sees;
// a gateway clock that runs ahead counts as 0.
var LatencyBuckets = [...]float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300}

// latency is a Prometheus histogram of written messages' latency. The
// writer goroutine observes; /metrics reads.
type latency struct {
	counts [len(LatencyBuckets) + 1]atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sumNS  atomic.Int64
}

// observe records the latency of every message of pending whose points
// InfluxDB acknowledged at now.
func (l *latency) observe(now time.Time, pending []item) {
	for i := range pending {
		it := &pending[i]
		if it.batch == nil || !it.write {
			continue
		}
		d := max(now.Sub(it.batch.Sent), 0)
		s := d.Seconds()
		b := 0
		for b < len(LatencyBuckets) && s > LatencyBuckets[b] {
			b++
		}
		l.counts[b].Add(1)
		l.sumNS.Add(int64(d))
	}
}

const latencyName = "luling_cloud_ingest_latency_seconds"

// write writes the histogram in the Prometheus text format.
func (l *latency) write(w io.Writer) {
	fmt.Fprintf(w, "# HELP %s Seconds from a message's sent time (sealed at the gateway) to InfluxDB acknowledging its points.\n# TYPE %s histogram\n", latencyName, latencyName)
	var n uint64
	for i := range l.counts {
		n += l.counts[i].Load()
		le := "+Inf"
		if i < len(LatencyBuckets) {
			le = strconv.FormatFloat(LatencyBuckets[i], 'g', -1, 64)
		}
		fmt.Fprintf(w, "%s_bucket{le=%q} %d\n", latencyName, le, n)
	}
	fmt.Fprintf(w, "%s_sum %s\n%s_count %d\n", latencyName, strconv.FormatFloat(time.Duration(l.sumNS.Load()).Seconds(), 'g', -1, 64), latencyName, n)
}
