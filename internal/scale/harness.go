// Package scale is the harness of the city-scale benchmarks (bench_test.go):
// it starts InfluxDB, a message engine (a broker), K real cloudd processes,
// each optionally held to a CPU quota with the cgroup cpu controller, and a
// simulated city (internal/citysim) in the test process; it measures for a
// while and reports cloudd's CPU, the ingest throughput, whether cloudd kept
// up and the p99 publish→InfluxDB latency (cloudd's
// luling_cloud_ingest_latency_seconds histogram).
//
// The engine is a parameter (Engine): Mosquitto is built in; another engine
// (NATS JetStream) is one more Engine value whose Start returns the MQTT URLs
// the gateways use and the cloudd flags of each instance.
//
// Bounds: a run that did not keep up names what held it back (Result.Bound)
// from what it measured: instances whose write slots (-influx-writes)
// were busy with InfluxDB requests 80% of the window, the time InfluxDB's
// own ("influxdb-write-time"), instances at their CPU quota, by CPU used
// or by the share of their quota periods that ended throttled
// ("cloudd-cpu"), the broker process near one full core ("broker"),
// InfluxDB near a core ("influxdb"), InfluxDB write requests that each
// carry the broker's whole in-flight window ("broker-inflight-window") or
// cloudd's whole -batch-points ("cloudd-batch-points"), the simulator
// late on its schedule ("simulator"), or the whole machine busy
// ("machine"). instanceBounds has the rules; TestRecordedBounds replays
// recorded runs through them.
package scale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/testenv"
)

// Endpoint is a running engine as the gateways and cloudd see it.
type Endpoint struct {
	// GatewayURLs are the MQTT URLs the simulated gateways connect to,
	// spread round-robin.
	GatewayURLs []string
	// CloudArgs returns the flags connecting cloudd instance i of n (its
	// broker or engine settings, client id and group).
	CloudArgs func(i, n int) []string
	// PIDs are the engine's processes, whose CPU a run reports; none when
	// the engine runs inside the test process.
	PIDs []int
	// Inflight is the broker's in-flight window towards each cloudd
	// (unacknowledged messages), 0 when unknown or not the limit.
	Inflight int
	// Hold, when set, makes the engine keep messages back from cloudd
	// (they stay in the engine) until release is called: Drain fills its
	// backlog while the instances run with their partitions settled, and
	// releases it to all of them at once. Nil for an engine that cannot.
	Hold func(tb testing.TB) (release func())
}

// Engine starts the message engine of a run.
type Engine struct {
	Name  string
	Start func(tb testing.TB) Endpoint
}

// MosquittoInflight is the in-flight window of the harness's Mosquitto:
// cloudd acknowledges a message only after InfluxDB wrote it, so the broker
// hands it at most this many messages per InfluxDB round trip. A city of
// 1,000 gateways sends about 1,400 messages a second; with the 200 of
// docs/cloudd.md's production settings and a write round trip of a few
// hundred milliseconds on a busy machine the window, not cloudd, is the
// bound (measured: see docs/scale.md).
const MosquittoInflight = 1000

// Mosquitto is one Mosquitto broker with the production settings of
// docs/cloudd.md (persistence, large queues) and an in-flight window of
// MosquittoInflight; several cloudd instances share the load through a
// shared subscription ($share/scale/…, cloudd -group scale), which
// Mosquitto distributes round-robin per message.
var Mosquitto = MosquittoEngine(MosquittoInflight)

// MosquittoEngine is Mosquitto with max_inflight_messages inflight.
func MosquittoEngine(inflight int) Engine {
	return Engine{Name: fmt.Sprintf("mosquitto (max_inflight_messages %d)", inflight), Start: func(tb testing.TB) Endpoint {
		before := children("mosquitto")
		port, dir := testenv.FreePort(tb), tb.TempDir()
		b := testenv.MosquittoConf(tb, dir, fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
user root
persistence true
persistence_location %s/
autosave_interval 60
max_inflight_messages %d
max_queued_messages 2000000
max_queued_bytes 0
message_size_limit 8388608
max_connections -1
log_dest stdout
log_type error
log_type warning
`, port, dir, inflight), port)
		return Endpoint{
			GatewayURLs: []string{b.URL()},
			CloudArgs: func(i, n int) []string {
				a := []string{"-broker-url", b.URL(), "-client-id", fmt.Sprintf("cloudd-scale-%d", i)}
				if n > 1 {
					a = append(a, "-group", "scale")
				}
				return a
			},
			PIDs:     newPIDs(before, children("mosquitto")),
			Inflight: inflight,
		}
	}}
}

// Run describes one measured run.
type Run struct {
	Engine    Engine
	Instances int     // cloudd processes
	CPUQuota  float64 // cores per cloudd instance (0.3 = 30% of one core); 0: none
	// CloudFlags are further flags of every cloudd instance.
	CloudFlags []string
	City       citysim.Config
	// InfluxData, when not nil, gives the run an InfluxDB server of its
	// own, started with these further [data] settings
	// (testenv.StartInfluxWith; empty: testenv's), instead of a database
	// on the test binary's shared server, which carries the series and
	// cache of every earlier run.
	InfluxData map[string]string
	Warmup     time.Duration // after every gateway is online, before measuring
	Measure    time.Duration
	// During, when set, runs as soon as the measurement window opened,
	// for faults such as killing an instance (Running.Kill) or an engine
	// node; the window closes Measure after it opened, or when During
	// returns if that is later.
	During func(tb testing.TB, r *Running)
	// After, when set, runs once the window closed, before anything
	// stops: for checks such as Running.Drain and a comparison with
	// InfluxDB.
	After func(tb testing.TB, r *Running)
}

// Running is a run in progress, as During and After see it.
type Running struct {
	City   *citysim.City
	Influx *testenv.Influx
	DB     string // the InfluxDB database cloudd writes
	clouds []*cloud
}

// Instances is the number of cloudd instances started.
func (r *Running) Instances() int { return len(r.clouds) }

// PID is cloudd instance i's process id.
func (r *Running) PID(i int) int { return r.clouds[i].cmd.Process.Pid }

// Kill ends cloudd instance i with SIGKILL and waits until it is gone. A
// killed instance counts for neither end of the window.
func (r *Running) Kill(i int) {
	c := r.clouds[i]
	c.cmd.Process.Kill()
	<-c.done
}

// Drain stops new traffic and waits until cloudd confirmed everything the
// gateways sent (failing after limit).
func (r *Running) Drain(tb testing.TB, limit time.Duration) citysim.Report {
	tb.Helper()
	r.City.StopTraffic()
	testenv.WaitFor(tb, limit, "cloudd to confirm everything the gateways sent", func() bool { return r.City.Totals().Unconfirmed == 0 })
	return r.City.Report()
}

// Result is what a run measured, over the measurement window.
type Result struct {
	Engine     string
	Instances  int
	Gateways   int
	Devices    int
	CPUQuota   float64
	CloudFlags []string
	Seconds    float64
	Offered    float64 // records per second the simulator sealed
	Readings   float64 // records per second cloudd wrote (all instances)
	// InstReadings are the records per second each instance wrote.
	InstReadings []float64
	// InstDrained are the records each instance wrote over a whole drain
	// (Drain only), and InstPartitions the partitions each held.
	InstDrained    []float64
	InstPartitions []float64
	// InstQueued is each instance's mean ingest queue over the window
	// (luling_cloud_ingest_queued, messages; Drain only): a queue that
	// ran empty means the engine did not supply the instance fast enough.
	InstQueued []float64
	CloudCPU   []float64 // per instance, % of one core
	// Throttled is, per instance, the share of its quota periods (100 ms,
	// those in which it was runnable) that ended with the quota used up:
	// cpu.stat nr_throttled / nr_periods.
	Throttled []float64
	// InstWaiting is, per instance, the share of its write slots
	// (-influx-writes) busy with InfluxDB write requests over the window:
	// luling_cloud_influx_write_seconds_total per second, divided by
	// luling_cloud_influx_writes_max. Near 1 the writer could not start
	// another write: it waited for InfluxDB.
	InstWaiting []float64
	EngineCPU   float64 // % of one core; 0 when the engine runs in the test process
	InfluxCPU   float64 // % of one core
	SimCPU      float64 // the test process (simulator), % of one core
	// The test process at the end: goroutines and heap in use, most of
	// them the simulated gateways' MQTT connections.
	SimGoroutines int
	SimHeapMB     float64
	MachineBusy   float64 // % of all cores
	Load1         float64 // the machine's 1-minute load average at the end
	P99           float64 // seconds, publish→InfluxDB
	BacklogStart  uint64  // messages the simulator held unconfirmed
	BacklogEnd    uint64
	KeptUp        bool
	Lost          float64 // cloudd's sequence check, all gateways, at the end
	GapsOpen      float64
	Duplicates    float64
	Resent        uint64 // messages the simulator published again
	// Moves are the NATS partitions the instances took, handed over or
	// gave up during the window (0 when their shares held still).
	Moves     int
	LateTicks uint64
	// Per InfluxDB write request of cloudd (all instances): messages and
	// points. cloudd writes serially, one request at a time per instance.
	MsgsPerWrite   float64
	PointsPerWrite float64
	// InfluxWriteMS is InfluxDB's own mean time per write request (its
	// /debug/vars httpd statistics), ClientWriteMS cloudd's (from its
	// write seconds; it includes the time a throttled instance took to
	// read the answer), InfluxWaiting the instances' mean InstWaiting.
	InfluxWriteMS float64
	ClientWriteMS float64
	InfluxWaiting float64
	Inflight      int // the engine's in-flight window, when known
	BatchPoints   int // cloudd's -batch-points
	Bound         []string
}

// PerCore is the records each instance wrote per second of CPU it used
// (records/s per core): what it costs, whatever share of a core it got.
// 0 for an instance that used none.
func (r Result) PerCore() []float64 {
	out := make([]float64, len(r.InstReadings))
	for i, v := range r.InstReadings {
		if i < len(r.CloudCPU) && r.CloudCPU[i] > 0 {
			out[i] = v / (r.CloudCPU[i] / 100)
		}
	}
	return out
}

// CloudCPUTotal is the CPU of all instances, % of one core.
func (r Result) CloudCPUTotal() float64 {
	var t float64
	for _, c := range r.CloudCPU {
		t += c
	}
	return t
}

func (r Result) String() string {
	q := "none"
	if r.CPUQuota > 0 {
		q = fmt.Sprintf("%.0f%% of a core each", r.CPUQuota*100)
	}
	cpus := make([]string, len(r.CloudCPU))
	for i, c := range r.CloudCPU {
		cpus[i] = fmt.Sprintf("%.0f%%", c)
		if i < len(r.Throttled) && r.Throttled[i] > 0 {
			cpus[i] += fmt.Sprintf(" (throttled in %.0f%% of its periods)", r.Throttled[i]*100)
		}
		if i < len(r.InstWaiting) {
			cpus[i] += fmt.Sprintf(" (write slots busy %.0f%%)", r.InstWaiting[i]*100)
		}
		if i < len(r.InstReadings) {
			cpus[i] += fmt.Sprintf(" %.0f/s", r.InstReadings[i])
		}
		if i < len(r.InstQueued) {
			cpus[i] += fmt.Sprintf(" (queue %.0f)", r.InstQueued[i])
		}
	}
	return fmt.Sprintf("%s, %d cloudd %v (quota %s), %d gateways × %d devices, %.0fs: offered %.0f records/s, written %.0f/s; "+
		"cloudd CPU, records %s; broker %.0f%%, influxd %.0f%%, simulator %.0f%% (%d goroutines, %.0f MiB heap), machine %.0f%% busy (load %.1f); p99 %.3fs; "+
		"backlog %d→%d messages, kept up %v; lost %.0f, gaps open %.0f, duplicates %.0f, resent %d, late ticks %d, partition moves %d; "+
		"per InfluxDB write %.0f messages, %.0f points (window %d, batch %d), %.0f ms in InfluxDB, %.0f ms in cloudd (write slots busy %.0f%%); bound: %s",
		r.Engine, r.Instances, r.CloudFlags, q, r.Gateways, r.Devices, r.Seconds, r.Offered, r.Readings,
		strings.Join(cpus, ", "), r.EngineCPU, r.InfluxCPU, r.SimCPU, r.SimGoroutines, r.SimHeapMB, r.MachineBusy, r.Load1, r.P99,
		r.BacklogStart, r.BacklogEnd, r.KeptUp, r.Lost, r.GapsOpen, r.Duplicates, r.Resent, r.LateTicks, r.Moves,
		r.MsgsPerWrite, r.PointsPerWrite, r.Inflight, r.BatchPoints, r.InfluxWriteMS, r.ClientWriteMS, r.InfluxWaiting*100, strings.Join(r.Bound, "+"))
}

// newPIDs returns the pids in after that are not in before.
func newPIDs(before, after []int) []int {
	var out []int
	for _, p := range after {
		found := false
		for _, q := range before {
			found = found || p == q
		}
		if !found {
			out = append(out, p)
		}
	}
	return out
}

var build struct {
	once sync.Once
	dir  string
	err  error
}

// clouddBinary builds cloudd once per test binary (like internal/e2e).
func clouddBinary(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			build.err = err
			return
		}
		if build.dir, build.err = os.MkdirTemp("", "luling-scale-bin-"); build.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", build.dir+"/", "./cmd/cloudd")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("build cloudd: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		tb.Fatalf("scale: %v", build.err)
	}
	return filepath.Join(build.dir, "cloudd")
}

// Cleanup removes the built binary and stops the shared InfluxDB; call it
// from TestMain after m.Run.
func Cleanup() {
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	testenv.StopShared()
}

// cloud is one running cloudd process.
type cloud struct {
	cmd   *exec.Cmd
	out   *testenv.Buffer
	done  chan struct{}
	http  string
	group *CPUGroup
}

func startCloud(tb testing.TB, bin string, args []string, quota float64, name string) *cloud {
	tb.Helper()
	c := &cloud{out: &testenv.Buffer{}, done: make(chan struct{}), http: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(tb))}
	if quota > 0 {
		g, err := NewCPUGroup(name, quota)
		if err != nil {
			tb.Fatalf("scale: %v (the CPU quota needs root and the cgroup cpu controller)", err)
		}
		c.group = g
		tb.Cleanup(func() {
			if err := g.Remove(); err != nil {
				tb.Errorf("scale: %v", err)
			}
		})
	}
	c.cmd = exec.Command(bin, append(args, "-http", c.http)...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		tb.Fatalf("scale: start cloudd: %v", err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	tb.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
		if tb.Failed() {
			tb.Logf("--- cloudd %s output:\n%s", c.http, c.out.String())
		}
	})
	if c.group != nil {
		if err := c.group.Add(c.cmd.Process.Pid); err != nil {
			tb.Fatalf("scale: %v", err)
		}
	}
	return c
}

func (c *cloud) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *cloud) metrics(token string) (Metrics, error) {
	req, _ := http.NewRequest("GET", "http://"+c.http+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cloudd %s /metrics: HTTP %d", c.http, resp.StatusCode)
	}
	return ParseMetrics(resp.Body)
}

// snapshot is everything read at one end of the measurement window. Its
// fields are exported for JSON: a run's snapshots can be recorded
// (LULING_SCALE_RECORD) and replayed through result and bounds in tests.
type snapshot struct {
	At        time.Time
	Sim       citysim.Totals
	Inst      []instSnap
	EngineCPU time.Duration
	InfluxCPU time.Duration
	SimCPU    time.Duration
	Busy, All time.Duration
	Load      float64 // 1-minute load average
	InfluxReq influxWrites
}

// instSnap is one cloudd instance's part of a snapshot.
type instSnap struct {
	Alive     bool
	CPU       time.Duration
	Quota     CPUStat // its cgroup's cpu.stat; zero without a quota
	Records   float64
	Owned     float64 // NATS partitions held (0 on other engines)
	Queued    float64 // messages in ingest's queue
	Moves     float64 // NATS partitions taken, handed over or given up so far
	Written   float64 // messages
	Points    float64
	Requests  float64
	Lost      float64
	Gaps      float64
	Dups      float64
	Latency   Histogram
	WriteSecs float64 // luling_cloud_influx_write_seconds_total: summed over writes in flight
	WritesMax float64 // luling_cloud_influx_writes_max: -influx-writes
}

func take(tb testing.TB, city *citysim.City, clouds []*cloud, token string, engine, influx []int, influxURL string) snapshot {
	tb.Helper()
	s := snapshot{At: time.Now(), Sim: city.Totals(), SimCPU: processCPU(os.Getpid())}
	var err error
	if s.InfluxReq, err = readInfluxWrites(influxURL); err != nil {
		tb.Fatalf("scale: %v", err)
	}
	s.Busy, s.All = machineCPU()
	s.Load = loadAverage()
	for _, p := range engine {
		s.EngineCPU += processCPU(p)
	}
	for _, p := range influx {
		s.InfluxCPU += processCPU(p)
	}
	for _, c := range clouds {
		var in instSnap
		if in.Alive = c.alive(); !in.Alive {
			s.Inst = append(s.Inst, in) // killed during the run (Running.Kill)
			continue
		}
		in.CPU = processCPU(c.cmd.Process.Pid)
		if c.group != nil {
			if in.Quota, err = c.group.Stat(); err != nil {
				tb.Fatalf("scale: %v", err)
			}
		}
		m, err := c.metrics(token)
		if err != nil {
			tb.Fatalf("scale: %v", err)
		}
		in.Records = m.Sum("luling_cloud_records_total")
		in.Owned = m.Sum("luling_cloud_nats_partitions_owned")
		in.Queued = m.Sum("luling_cloud_ingest_queued")
		in.Moves = m.Sum("luling_cloud_nats_partitions_acquired_total") + m.Sum("luling_cloud_nats_partitions_released_total") + m.Sum("luling_cloud_nats_partitions_lost_total")
		in.Written = m.Sum("luling_cloud_ingest_written_total")
		in.Points = m.Sum("luling_cloud_ingest_points_total")
		in.Requests = m.Sum("luling_cloud_influx_requests_total")
		in.Lost = m.Sum("luling_cloud_seq_lost_total")
		in.Gaps = m.Sum("luling_cloud_seq_gaps_open")
		in.Dups = m.Sum("luling_cloud_seq_duplicates_total")
		in.Latency = m.Histogram("luling_cloud_ingest_latency_seconds")
		in.WriteSecs = m.Sum("luling_cloud_influx_write_seconds_total")
		in.WritesMax = m.Sum("luling_cloud_influx_writes_max")
		s.Inst = append(s.Inst, in)
	}
	return s
}

func pct(d time.Duration, over time.Duration) float64 { return 100 * d.Seconds() / over.Seconds() }

// stage is what every run starts from: the cloudd binary, a fresh
// InfluxDB database, the engine, and a viewer token for cloudd's metrics.
type stage struct {
	flags  []string // Run.CloudFlags
	bin    string
	influx *testenv.Influx
	db     string
	ep     Endpoint
	tokens string
	token  string
}

func newStage(tb testing.TB, r Run) *stage {
	tb.Helper()
	st := &stage{bin: clouddBinary(tb), flags: r.CloudFlags}
	if r.InfluxData != nil {
		st.influx, st.db = ownInflux(tb, r.InfluxData), "scale"
		if err := st.influx.CreateDatabase(st.db); err != nil {
			tb.Fatalf("scale: %v", err)
		}
	} else {
		st.influx, st.db = testenv.NewDatabase(tb)
	}
	st.ep = r.Engine.Start(tb)
	st.tokens = filepath.Join(tb.TempDir(), "tokens.json")
	out, err := exec.Command(st.bin, "token", "create", "-tokens", st.tokens, "-name", "scale", "-role", "viewer").Output()
	if err != nil {
		tb.Fatalf("scale: cloudd token create: %v", err)
	}
	st.token = strings.TrimSpace(string(out))
	return st
}

// ownInflux starts an InfluxDB server for one run, stopped when it ends.
func ownInflux(tb testing.TB, data map[string]string) *testenv.Influx {
	tb.Helper()
	bin := testenv.FindInfluxd()
	if bin == "" {
		tb.Fatal("scale: influxd not found: run `make services`")
	}
	in, err := testenv.StartInfluxWith(bin, tb.TempDir(), testenv.FreePort(tb), testenv.FreePort(tb), data)
	if err != nil {
		tb.Fatalf("scale: %v", err)
	}
	tb.Cleanup(in.Close)
	return in
}

// cloudArgs are instance i's flags of n: the engine's, InfluxDB, tokens,
// then Run.CloudFlags (which override any of them: the last one counts).
func (st *stage) cloudArgs(i, n int) []string {
	a := append(st.ep.CloudArgs(i, n), "-influx-url", st.influx.URL, "-influx-bucket", st.db, "-tokens", st.tokens, "-log-level", "warn")
	return append(a, st.flags...)
}

// waitHealthy waits until cloudd c answers /healthz with 200.
func waitHealthy(tb testing.TB, c *cloud, timeout time.Duration) {
	tb.Helper()
	testenv.WaitFor(tb, timeout, "cloudd "+c.http+" connected", func() bool {
		resp, err := http.Get("http://" + c.http + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// startCity runs the city of cfg (its brokers the engine's gateway
// listeners) until every gateway is online; stop ends it.
func (st *stage) startCity(tb testing.TB, cfg citysim.Config) (city *citysim.City, stop func()) {
	tb.Helper()
	city, err := citysim.New(cfg)
	if err != nil {
		tb.Fatalf("scale: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- city.Run(ctx) }()
	stop = func() { cancel(); <-done }
	testenv.WaitFor(tb, time.Minute+time.Duration(cfg.Gateways)*100*time.Millisecond, "every gateway online", func() bool {
		return city.Totals().Online == cfg.Gateways
	})
	return city, stop
}

// Exec performs a run and returns what it measured.
func Exec(tb testing.TB, r Run) Result {
	tb.Helper()
	if r.Instances < 1 {
		r.Instances = 1
	}
	st := newStage(tb, r)
	bin, influx, db, ep, token := st.bin, st.influx, st.db, st.ep, st.token
	var clouds []*cloud
	for i := 0; i < r.Instances; i++ {
		clouds = append(clouds, startCloud(tb, bin, st.cloudArgs(i, r.Instances), r.CPUQuota, fmt.Sprintf("luling-scale-%d-%d", os.Getpid(), i)))
	}
	for _, c := range clouds {
		waitHealthy(tb, c, 60*time.Second)
	}

	cfg := r.City
	cfg.Brokers = ep.GatewayURLs
	city, stopCity := st.startCity(tb, cfg)
	defer stopCity()
	time.Sleep(r.Warmup) // a measurement window, not a wait for a condition

	influxPIDs := []int{influx.PID()}
	rn := &Running{City: city, Influx: influx, DB: db, clouds: clouds}
	start := take(tb, city, clouds, token, ep.PIDs, influxPIDs, influx.URL)
	if r.During != nil {
		r.During(tb, rn)
	}
	if rest := r.Measure - time.Since(start.At); rest > 0 {
		time.Sleep(rest) // the rest of the measurement window
	}
	end := take(tb, city, clouds, token, ep.PIDs, influxPIDs, influx.URL)
	rec := newRecording(r, cfg, ep, start, end)
	rec.keep(tb)
	res := rec.result()
	if r.After != nil {
		r.After(tb, rn)
	}
	return res
}

// batchPoints is cloudd's -batch-points in flags, or its default.
func batchPoints(flags []string) int { return flagInt(flags, "batch-points", 5000) }

// flagInt is the value of the last -name N (or -name=N) in flags, or def.
func flagInt(flags []string, name string, def int) int {
	n := def
	for i, f := range flags {
		fname, val, hasVal := strings.Cut(strings.TrimLeft(f, "-"), "=")
		if fname != name {
			continue
		}
		if !hasVal && i+1 < len(flags) {
			val = flags[i+1]
		}
		if v, err := strconv.Atoi(val); err == nil {
			n = v
		}
	}
	return n
}

// recording is what a run's Result and bound are computed from: the
// snapshots at both ends of its window and what describes the run. With
// LULING_SCALE_RECORD set to a folder, every run writes its recording
// there as JSON; testdata/bounds holds recorded ones, replayed through
// the same computation by TestRecordedBounds.
type recording struct {
	Engine     string
	Instances  int
	CPUQuota   float64
	CloudFlags []string
	Gateways   int
	Devices    int
	Inflight   int  // the engine's in-flight window, when known
	EnginePIDs bool // the engine runs in processes of its own (its CPU is measured)
	Start, End snapshot
	// A drain (Drain): the backlog in records, and each instance's mean
	// ingest queue over the window.
	Drain      bool
	Backlog    float64
	InstQueued []float64
}

func newRecording(r Run, cfg citysim.Config, ep Endpoint, start, end snapshot) recording {
	return recording{Engine: r.Engine.Name, Instances: r.Instances, CPUQuota: r.CPUQuota, CloudFlags: r.CloudFlags,
		Gateways: cfg.Gateways, Devices: cfg.Devices, Inflight: ep.Inflight, EnginePIDs: len(ep.PIDs) > 0, Start: start, End: end}
}

// keep writes rec as JSON into $LULING_SCALE_RECORD, when set.
func (rec recording) keep(tb testing.TB) {
	dir := os.Getenv("LULING_SCALE_RECORD")
	if dir == "" {
		return
	}
	b, err := json.MarshalIndent(rec, "", " ")
	if err == nil {
		name := fmt.Sprintf("%s-%d-%s.json", strings.ReplaceAll(strings.Fields(rec.Engine + " x")[0], "/", "-"), rec.Instances, rec.End.At.UTC().Format("20060102T150405"))
		err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	if err != nil {
		tb.Errorf("scale: LULING_SCALE_RECORD: %v", err)
	}
}

// result computes what a run measured from its recording, and its bound.
func (rec recording) result() Result {
	start, end := rec.Start, rec.End
	win := end.At.Sub(start.At)
	res := Result{
		Engine: rec.Engine, Instances: rec.Instances, Gateways: rec.Gateways, Devices: rec.Devices, CPUQuota: rec.CPUQuota, CloudFlags: rec.CloudFlags,
		Seconds:      win.Seconds(),
		Offered:      float64(end.Sim.Records-start.Sim.Records) / win.Seconds(),
		InfluxCPU:    pct(end.InfluxCPU-start.InfluxCPU, win),
		SimCPU:       pct(end.SimCPU-start.SimCPU, win),
		BacklogStart: start.Sim.Unconfirmed, BacklogEnd: end.Sim.Unconfirmed,
		Resent: end.Sim.Resent - start.Sim.Resent, LateTicks: end.Sim.LateTicks - start.Sim.LateTicks,
	}
	if all := end.All - start.All; all > 0 {
		res.MachineBusy = 100 * float64(end.Busy-start.Busy) / float64(all)
	}
	res.EngineCPU = pct(end.EngineCPU-start.EngineCPU, win)
	res.Load1 = end.Load
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.SimGoroutines, res.SimHeapMB = runtime.NumGoroutine(), float64(ms.HeapInuse)/(1<<20)
	// Instances killed during the window count for neither end.
	var records, written, points, requests, writeSecs float64
	live := 0
	var lat Histogram
	for i := range end.Inst {
		st, en := start.Inst[i], end.Inst[i]
		if en.Alive {
			res.Lost += en.Lost
			res.GapsOpen += en.Gaps
		}
		if !st.Alive || !en.Alive {
			res.CloudCPU = append(res.CloudCPU, 0)
			res.Throttled = append(res.Throttled, 0)
			res.InstWaiting = append(res.InstWaiting, 0)
			res.InstReadings = append(res.InstReadings, 0)
			continue
		}
		res.InstReadings = append(res.InstReadings, (en.Records-st.Records)/win.Seconds())
		res.CloudCPU = append(res.CloudCPU, pct(en.CPU-st.CPU, win))
		res.Throttled = append(res.Throttled, en.Quota.ThrottledShare(st.Quota))
		// Seconds in write requests, summed over those in flight, per
		// second of the window and write slot (-influx-writes).
		waiting := (en.WriteSecs - st.WriteSecs) / win.Seconds() / max(en.WritesMax, 1)
		res.InstWaiting = append(res.InstWaiting, waiting)
		res.InfluxWaiting += waiting
		live++
		writeSecs += en.WriteSecs - st.WriteSecs
		records += en.Records - st.Records
		written += en.Written - st.Written
		points += en.Points - st.Points
		requests += en.Requests - st.Requests
		res.Duplicates += en.Dups - st.Dups
		res.Moves += int(en.Moves - st.Moves)
		d, err := en.Latency.Sub(st.Latency)
		if err == nil {
			lat, err = lat.Add(d)
		}
		if err != nil {
			res.P99 = math.NaN()
		}
	}
	res.Readings = records / win.Seconds()
	if requests > 0 {
		res.MsgsPerWrite = written / requests
		res.PointsPerWrite = points / requests
		res.ClientWriteMS = writeSecs * 1000 / requests
	}
	if live > 0 {
		res.InfluxWaiting /= float64(live)
	}
	res.Inflight, res.BatchPoints = rec.Inflight, batchPoints(rec.CloudFlags)
	if n := end.InfluxReq.Requests - start.InfluxReq.Requests; n > 0 {
		res.InfluxWriteMS = (end.InfluxReq.Duration - start.InfluxReq.Duration).Seconds() * 1000 / n
	}
	if !math.IsNaN(res.P99) {
		res.P99 = lat.Quantile(0.99)
	}
	// Kept up: cloudd wrote (nearly) what was offered, and what the
	// gateways hold unconfirmed grew by less than two seconds of messages.
	msgRate := float64(end.Sim.Messages-start.Sim.Messages) / win.Seconds()
	res.KeptUp = res.Readings >= 0.95*res.Offered && float64(end.Sim.Unconfirmed) <= float64(start.Sim.Unconfirmed)+2*msgRate
	if rec.Drain {
		res.Offered = rec.Backlog // in records, not a rate
		res.KeptUp = false
		res.InstQueued = rec.InstQueued
	}
	res.Bound = bounds(res, rec.CPUQuota, rec.EnginePIDs, rec.Drain)
	return res
}

// bounds names what held a run back, from its measurements. In a drain
// (drain true) every write is full by design, so the in-flight window and
// -batch-points are no bound there.
func bounds(r Result, quota float64, enginePIDs, drain bool) []string {
	if r.KeptUp {
		return []string{"none (kept up with the offered load)"}
	}
	var b []string
	atQuota, waiting, live := instanceBounds(r, quota)
	switch {
	case waiting > 0 && waiting == live:
		b = append(b, "influxdb-write-time")
	case waiting > 0:
		b = append(b, fmt.Sprintf("influxdb-write-time (%d of %d instances)", waiting, live))
	}
	switch {
	case atQuota > 0 && atQuota == live:
		b = append(b, "cloudd-cpu")
	case atQuota > 0:
		b = append(b, fmt.Sprintf("cloudd-cpu (%d of %d instances)", atQuota, live))
	}
	if unevenShares(r.InstReadings) {
		b = append(b, "uneven-shares")
	}
	if r.Moves > 0 {
		b = append(b, "partitions-moved")
	}
	// A drain's instances always have messages waiting in the engine: an
	// ingest queue below one write's worth on average means the pulls (and
	// the validation done as a message is delivered) did not keep the
	// writer busy.
	for _, q := range r.InstQueued {
		if q < max(r.MsgsPerWrite, 1) {
			b = append(b, "pull-supply")
			break
		}
	}
	if enginePIDs && r.EngineCPU >= 85 {
		b = append(b, "broker")
	}
	if r.InfluxCPU >= 85 {
		b = append(b, "influxdb")
	}
	// cloudd acknowledges a message after its write: requests that carry
	// the whole in-flight window, or the whole -batch-points, mean the
	// InfluxDB round trip paces the ingest.
	if !drain && r.Inflight > 0 && r.MsgsPerWrite >= 0.8*float64(r.Inflight)/float64(max(len(r.CloudCPU), 1)) {
		b = append(b, "broker-inflight-window")
	}
	if !drain && r.BatchPoints > 0 && r.PointsPerWrite >= 0.8*float64(r.BatchPoints) {
		b = append(b, "cloudd-batch-points")
	}
	if r.LateTicks > 0 {
		b = append(b, "simulator")
	}
	if r.MachineBusy >= 90 {
		b = append(b, "machine")
	}
	if len(b) == 0 {
		return []string{"unknown"}
	}
	return b
}

// Thresholds of instanceBounds.
const (
	quotaUsed       = 0.85 // of the quota: CPU at the quota
	quotaPeriods    = 0.5  // of its periods throttled: held by the quota
	slotsBusy       = 0.8  // of the write slots busy: waiting for InfluxDB
	influxOwnsWrite = 0.5  // of cloudd's time per write spent in InfluxDB
)

// instanceBounds counts the live instances of r (those not killed during
// the window), those that waited for InfluxDB and those held by their
// CPU quota (quota cores; 0: none, then a whole machine).
//
// An instance waited for InfluxDB when its write slots (-influx-writes)
// were busy at least slotsBusy of the window, so that its writer could
// rarely start another write however much CPU it had, and InfluxDB's own
// time per request was at least influxOwnsWrite of cloudd's: cloudd's
// write seconds run until it reads the answer, and a throttled instance
// reads it late, which is its quota's doing, not InfluxDB's.
//
// An instance that did not wait was held by its quota when it used
// quotaUsed of it, or when at least quotaPeriods of the periods in which
// it was runnable ended throttled: it ran into the quota more often than
// not, even if it used less (the quota is spent in slices per CPU, and a
// bursty process is throttled with some of it unused).
func instanceBounds(r Result, quota float64) (atQuota, waiting, live int) {
	limit := quota * 100
	if quota <= 0 {
		limit = float64(runtime.NumCPU()) * 100
	}
	influxSlow := r.ClientWriteMS <= 0 || r.InfluxWriteMS >= influxOwnsWrite*r.ClientWriteMS
	for i, c := range r.CloudCPU {
		if c == 0 && (i >= len(r.InstReadings) || r.InstReadings[i] == 0) {
			continue // killed during the window
		}
		live++
		if i < len(r.InstWaiting) && r.InstWaiting[i] >= slotsBusy && influxSlow {
			waiting++
			continue
		}
		if c >= quotaUsed*limit || (quota > 0 && i < len(r.Throttled) && r.Throttled[i] >= quotaPeriods) {
			atQuota++
		}
	}
	return atQuota, waiting, live
}

// unevenShares reports whether one of several instances wrote more than
// 15% above their mean: the instances did not carry equal shares, and the
// busiest one paced the run.
func unevenShares(perInstance []float64) bool {
	var sum, top float64
	n := 0
	for _, v := range perInstance {
		if v > 0 {
			sum += v
			top = max(top, v)
			n++
		}
	}
	return n > 1 && top > 1.15*sum/float64(n)
}

// influxWrites are InfluxDB's counters of HTTP write requests.
type influxWrites struct {
	Requests float64
	Duration time.Duration
}

// readInfluxWrites reads InfluxDB 1.x's /debug/vars: the "httpd"
// statistics' writeReq and writeReqDurationNs.
func readInfluxWrites(url string) (influxWrites, error) {
	resp, err := http.Get(url + "/debug/vars")
	if err != nil {
		return influxWrites{}, fmt.Errorf("influxdb statistics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return influxWrites{}, fmt.Errorf("influxdb statistics: %s/debug/vars: HTTP %d", url, resp.StatusCode)
	}
	return parseInfluxWrites(resp.Body)
}

func parseInfluxWrites(r io.Reader) (influxWrites, error) {
	var vars map[string]json.RawMessage
	if err := json.NewDecoder(r).Decode(&vars); err != nil {
		return influxWrites{}, fmt.Errorf("influxdb statistics: %w", err)
	}
	var w influxWrites
	found := false
	for _, raw := range vars {
		var st struct {
			Name   string             `json:"name"`
			Values map[string]float64 `json:"values"`
		}
		if json.Unmarshal(raw, &st) != nil || st.Name != "httpd" {
			continue
		}
		found = true
		w.Requests += st.Values["writeReq"]
		w.Duration += time.Duration(st.Values["writeReqDurationNs"])
	}
	if !found {
		return influxWrites{}, errors.New(`influxdb statistics: no "httpd" statistics in /debug/vars`)
	}
	return w, nil
}
