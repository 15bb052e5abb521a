package scale

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// costCity is the line protocol cloudd writes for a drain of benchmark b,
// scaled down: gateways of 1,200 bays (lot a, a zone per 50 bays), each
// message one gateway's second of traffic at a bay change every 10 s (120
// bay changes) plus the parking_lot points cloudd derives from them
// (cloud/fleet) and 10% access and inverter records, as internal/citysim
// sends them. Benchmark b's backlog writes about 1.4 points to each bay
// series of a fresh database; so does a costCity of 1.4×1,200/120 = 14
// messages per gateway.
type costCity struct {
	site     string
	gateways int
	bays     int
	parking  []fleet.Parking
	rng      *rand.Rand
	at       time.Time
	keys     influxw.Keys
	derived  []payload.Record
	records  int // gateway records made so far (what benchmark b counts)
	points   int // points made so far, derived ones included
}

func newCostCity(site string, gateways int, seed uint64) *costCity {
	return &costCity{site: site, gateways: gateways, bays: 1200, parking: make([]fleet.Parking, gateways),
		rng: rand.New(rand.NewPCG(seed, 15)), at: time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)}
}

func costBayTags(i int) map[string]string {
	return map[string]string{"device": fmt.Sprintf("bay-%04d", i+1), "lot": "a", "zone": fmt.Sprintf("z%d", i/50+1), "bay": fmt.Sprintf("%04d", i+1)}
}

// message appends gateway g's message of one second to dst, as cloudd's
// writer appends it (influxw.AppendLine, then the derived points).
func (c *costCity) message(dst []byte, g int) []byte {
	gw := fmt.Sprintf("gw-%05d", g+1)
	var recs []payload.Record
	step := time.Second / 134
	for k := 0; k < 134; k++ {
		c.at = c.at.Add(step)
		switch {
		case k%10 == 9 && k%20 == 9:
			recs = append(recs, payload.Record{Measurement: "access", Time: c.at,
				Tags: map[string]string{"door": "lobby", "reader": "rdr-2", "result": "granted"},
				Fields: map[string]payload.Value{"credential": payload.String(fmt.Sprintf("card-%d", c.rng.IntN(500))),
					"reason": payload.String("ok"), "latency_ms": payload.Float(float64(20+c.rng.IntN(600)) / 10)}})
		case k%10 == 9:
			v, a := 380+float64(c.rng.IntN(400))/10, 2+float64(c.rng.IntN(800))/100
			recs = append(recs, payload.Record{Measurement: "pv", Time: c.at,
				Tags: map[string]string{"device": "inv-1", "model": "citysim"},
				Fields: map[string]payload.Value{"dc_voltage_v": payload.Float(v), "dc_current_a": payload.Float(a),
					"dc_power_w": payload.Float(float64(int(v * a))), "ac_power_w": payload.Float(float64(int(v * a * 0.96))),
					"temp_c": payload.Float(30 + float64(c.rng.IntN(150))/10), "state": payload.String("mppt")}})
		default:
			occ := c.rng.IntN(2) == 0
			recs = append(recs, payload.Record{Measurement: "parking_bay", Time: c.at, Tags: costBayTags(c.rng.IntN(c.bays)),
				Fields: map[string]payload.Value{"occupied": payload.Bool(occ), "distance_cm": payload.Float(110 + float64(c.rng.IntN(1500))/10)}})
		}
	}
	for i := range recs {
		dst = influxw.AppendLine(dst, &c.keys, c.site, gw, &recs[i])
		dst = append(dst, '\n')
	}
	c.derived = c.parking[g].Apply(c.derived[:0], recs)
	for i := range c.derived {
		dst = influxw.AppendLine(dst, &c.keys, c.site, gw, &c.derived[i])
		dst = append(dst, '\n')
	}
	c.records += len(recs)
	c.points += len(recs) + len(c.derived)
	return dst
}

// bodies returns the write requests of perGateway messages from every
// gateway, in turns (a drain's batches carry many gateways' messages),
// each request at most batch points.
func (c *costCity) bodies(perGateway, batch int) [][]byte {
	var out [][]byte
	var cur []byte
	n := 0
	for m := 0; m < perGateway; m++ {
		for g := 0; g < c.gateways; g++ {
			before := c.points
			cur = c.message(cur, g)
			if n += c.points - before; n >= batch {
				out = append(out, cur)
				cur, n = nil, 0
			}
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// primeBays writes one point to every bay series of c's gateways, an hour
// before c's traffic: the series a city that has run for a day has.
func (c *costCity) primeBays() []byte {
	var dst []byte
	t := c.at.Add(-time.Hour)
	for g := 0; g < c.gateways; g++ {
		gw := fmt.Sprintf("gw-%05d", g+1)
		for b := 0; b < c.bays; b++ {
			r := payload.Record{Measurement: "parking_bay", Time: t, Tags: costBayTags(b), Fields: map[string]payload.Value{"occupied": payload.Bool(false)}}
			dst = influxw.AppendLine(dst, &c.keys, c.site, gw, &r)
			dst = append(dst, '\n')
		}
	}
	return dst
}

// reverseTags rewrites each line with its tags in reverse order (InfluxDB
// then sorts them itself); costCity's tag values hold no escaped commas.
func reverseTags(body []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(bytes.TrimSuffix(body, []byte{'\n'}), []byte{'\n'}) {
		key, rest, _ := bytes.Cut(line, []byte{' '})
		parts := bytes.Split(key, []byte{','})
		out.Write(parts[0])
		for i := len(parts) - 1; i > 0; i-- {
			out.WriteByte(',')
			out.Write(parts[i])
		}
		out.WriteByte(' ')
		out.Write(rest)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// toMillis cuts each line's nanosecond timestamp to milliseconds.
func toMillis(body []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(bytes.TrimSuffix(body, []byte{'\n'}), []byte{'\n'}) {
		out.Write(line[:len(line)-6])
		out.WriteByte('\n')
	}
	return out.Bytes()
}

// costCase is one way of writing costCity's traffic to InfluxDB.
type costCase struct {
	name     string
	data     map[string]string // influxd [data] settings (testenv.StartInfluxWith)
	batch    int               // points per request at most (cloudd's -batch-points: 5,000)
	existing bool              // every bay series written once before the measured pass
	gzip     bool
	millis   bool    // precision=ms, timestamps cut to milliseconds
	unsorted bool    // tags in reverse order
	writers  int     // requests in flight at once (3 instances × -influx-writes 2: 6); default 1
	stats    bool    // /debug/vars read every 200 ms meanwhile, as benchmark b's harness does
	rate     float64 // points per second offered, spread evenly (cloudd at its quota: intermittent); 0: as fast as InfluxDB takes them
}

// BenchmarkInfluxCost measures InfluxDB's CPU per point and per gateway
// record for the line protocol cloudd writes (costCity), from influxd's
// CPU time in /proc (user + system, its background work after the last
// request included), not from wall time, so a busy machine slows it
// without changing the figure much. "drain" is what benchmark b gives a
// fresh InfluxDB: most bay points create their series. "steady" writes
// the same traffic to series that exist, as in a city that has run for a
// day. The other cases vary one thing against those two: request size,
// gzip, timestamp precision, tag order (cloudd sorts them) and InfluxDB
// settings. Each case starts its own influxd, whose cache is written to a
// TSM file 2 s after the last write, so that the snapshot counts in every
// case. Full size: 20 gateways, about 37,500 records (about three minutes
// for all cases); LULING_SCALE_SMOKE=1 or -short: 4 gateways;
// LULING_INFLUX_COST_GATEWAYS=N sets it (docs/scale.md: 60).
func BenchmarkInfluxCost(b *testing.B) {
	bin := testenv.FindInfluxd()
	if bin == "" {
		if os.Getenv("LULING_REQUIRE_SERVICES") != "" {
			b.Fatal("influxd not found: run `make services`")
		}
		b.Skip("influxd not found: run `make services`")
	}
	gateways := 20
	if testing.Short() || os.Getenv("LULING_SCALE_SMOKE") != "" {
		gateways = 4
	}
	if v := os.Getenv("LULING_INFLUX_COST_GATEWAYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("LULING_INFLUX_COST_GATEWAYS=%q: want a positive number", v)
		}
		gateways = n
	}
	cases := []costCase{
		{name: "drain"},
		{name: "drain/writers=6", writers: 6},
		{name: "drain/writers=6/stats", writers: 6, stats: true},
		{name: "drain/writers=6/paced", writers: 6, rate: 26000},
		{name: "steady/writers=6/paced", existing: true, writers: 6, rate: 26000},
		{name: "steady", existing: true},
		{name: "steady/batch=1000", existing: true, batch: 1000},
		{name: "steady/batch=20000", existing: true, batch: 20000},
		{name: "steady/gzip", existing: true, gzip: true},
		{name: "steady/precision=ms", existing: true, millis: true},
		{name: "steady/tags-unsorted", existing: true, unsorted: true},
		{name: "drain/batch=20000", batch: 20000},
		{name: "drain/index=tsi1", data: map[string]string{"index-version": `"tsi1"`}},
		{name: "steady/index=tsi1", existing: true, data: map[string]string{"index-version": `"tsi1"`}},
		{name: "drain/wal-fsync-delay=100ms", data: map[string]string{"wal-fsync-delay": `"100ms"`}},
		{name: "drain/compactions=1", data: map[string]string{"max-concurrent-compactions": "1"}},
		{name: "drain/cache-snapshot=256m", data: map[string]string{"cache-snapshot-memory-size": `"256m"`}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				runCost(b, bin, c, gateways)
			}
		})
	}
}

func runCost(b *testing.B, bin string, c costCase, gateways int) {
	// The timer runs throughout: with the setup excluded, a run shorter
	// than -benchtime would be repeated for nothing (the figures are per
	// point, whatever b.N). The cache is written to a TSM file 2 s after
	// the last write instead of InfluxDB's 10 min, so that its snapshot
	// counts in every case, whatever cache-snapshot-memory-size deferred.
	data := map[string]string{"cache-snapshot-write-cold-duration": `"2s"`}
	maps.Copy(data, c.data)
	in, err := testenv.StartInfluxWith(bin, b.TempDir(), testenv.FreePort(b), testenv.FreePort(b), data)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	if err := in.CreateDatabase("cost"); err != nil {
		b.Fatal(err)
	}
	city := newCostCity("city", gateways, 1)
	if c.batch == 0 {
		c.batch = 5000
	}
	if c.existing {
		prime := city.primeBays()
		for len(prime) > 0 {
			n := min(len(prime), 1<<20)
			n += bytes.IndexByte(prime[n-1:], '\n')
			postLines(b, in.URL, prime[:n], "ns", false)
			prime = prime[n:]
		}
	}
	bodies := city.bodies(14, c.batch)
	precision := "ns"
	for i := range bodies {
		if c.unsorted {
			bodies[i] = reverseTags(bodies[i])
		}
		if c.millis {
			bodies[i], precision = toMillis(bodies[i]), "ms"
		}
	}
	quiet(in.PID())
	cpu0 := processCPU(in.PID())
	start := time.Now()
	stop := make(chan struct{})
	statsDone := make(chan struct{})
	go func() {
		defer close(statsDone)
		for c.stats {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond): // the harness's sampling period
				readInfluxWrites(in.URL)
			}
		}
	}()
	next := make(chan []byte)
	var wg sync.WaitGroup
	for w := 0; w < max(c.writers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range next {
				postLines(b, in.URL, body, precision, c.gzip)
			}
		}()
	}
	sent := 0
	for _, body := range bodies {
		if c.rate > 0 {
			if ahead := time.Duration(float64(sent)/c.rate*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead) // the offered rate, not a wait for a condition
			}
		}
		next <- body
		sent += bytes.Count(body, []byte{'\n'})
	}
	close(next)
	wg.Wait()
	close(stop)
	<-statsDone
	wall := time.Since(start)
	time.Sleep(4 * time.Second) // past the cold duration: the snapshot starts
	quiet(in.PID())             // its background work (cache snapshots, compactions) counts
	cpu := processCPU(in.PID()) - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(city.points), "influxd-µs/point")
	b.ReportMetric(float64(cpu.Microseconds())/float64(city.records), "influxd-µs/record")
	b.ReportMetric(float64(city.points)/wall.Seconds(), "points/s")
	b.ReportMetric(float64(city.points), "points")
}

// quiet waits until process pid used at most one clock tick of CPU in each
// of two 250 ms periods in a row (at most 15 s).
func quiet(pid int) {
	last, calm := processCPU(pid), 0
	for deadline := time.Now().Add(15 * time.Second); calm < 2 && time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond) // a sampling period
		now := processCPU(pid)
		if now-last <= clockTick {
			calm++
		} else {
			calm = 0
		}
		last = now
	}
}

// postLines writes body to database cost through the v2 write endpoint,
// as influxdb-client-go does for cloudd.
func postLines(b *testing.B, url string, body []byte, precision string, gz bool) {
	var rd io.Reader = bytes.NewReader(body)
	req, err := http.NewRequest("POST", url+"/api/v2/write?bucket=cost&precision="+precision, nil)
	if err != nil {
		b.Fatal(err)
	}
	if gz {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(body)
		w.Close()
		rd = &buf
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.Body = io.NopCloser(rd)
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(resp.Body)
		b.Fatalf("write %d bytes: HTTP %d: %s", len(body), resp.StatusCode, strings.TrimSpace(string(msg)))
	}
}
