package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/testenv"
)

// binDir holds gatewayd and cloudd, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "luling-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	root, err := testenv.RepoRoot()
	if err == nil {
		// LULING_E2E_TAGS adds build tags, such as pprof for profiles
		// of the running gatewayd (docs/performance.md).
		cmd := exec.Command("go", "build", "-tags", os.Getenv("LULING_E2E_TAGS"), "-o", dir+"/", "./cmd/gatewayd", "./cmd/cloudd")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, berr := cmd.CombinedOutput()
		if berr == nil { // gatewayd hands configs with plugins over to it
			cmd = exec.Command("go", "build", "-tags", "luling_full", "-o", dir+"/gatewayd-full", "./cmd/gatewayd")
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			out, berr = cmd.CombinedOutput()
		}
		if berr != nil {
			err = fmt.Errorf("build binaries: %v\n%s", berr, out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	testenv.StopShared()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a child process whose output is kept for failure reports.
type proc struct {
	name string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan struct{}
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, args: args, out: new(bytes.Buffer)}
	p.start(t)
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("--- %s output (last 4 KiB):\n%s", filepath.Base(name), tail(p.output(), 4096))
		}
	})
	return p
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd = exec.Command(p.name, p.args...)
	p.cmd.Stdout = &lockedWriter{mu: &p.mu, w: p.out}
	p.cmd.Stderr = p.cmd.Stdout
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	p.done = done
	cmd := p.cmd
	go func() { cmd.Wait(); close(done) }()
}

// signal sends sig and waits for the process to end (SIGKILL after 15 s).
func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	select {
	case <-done:
		return
	default:
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func (p *proc) pid() int { p.mu.Lock(); defer p.mu.Unlock(); return p.cmd.Process.Pid }

func (p *proc) output() string { p.mu.Lock(); defer p.mu.Unlock(); return p.out.String() }

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// world is one end-to-end setup: Mosquitto, InfluxDB, cloudd, a simulated
// lot and gatewayd.
type world struct {
	t        *testing.T
	broker   *testenv.Broker
	proxy    *testenv.Proxy // between gatewayd and the broker, with worldOptions.proxy
	outbox   string         // gatewayd's outbox folder
	influx   *testenv.Influx
	db       string
	cloud    *proc
	cloudAPI string
	apiToken string // an operator token for cloudAPI
	lot      *modbussim.Lot
	gw       *proc
	gwCfg    string
	status   string
	poll     time.Duration
}

type worldOptions struct {
	bays, buses int
	poll        time.Duration
	extra       string // more gateway config, such as rules:
	moreBuses   string // more entries under buses:
	moreDevices string // more entries under devices:

	cloudArgs []string // more cloudd flags
	// brokerConf, when set, is the whole Mosquitto config for a broker on
	// port whose data folder is dir (testenv.Mosquitto's otherwise).
	brokerConf func(port int, dir string) string
	// proxy puts a testenv.Proxy between gatewayd and the broker (world.proxy).
	proxy bool
	// keepalive, when set, is gatewayd's MQTT keep-alive (uplink.keepalive).
	keepalive time.Duration
	// outboxDir, when set, is gatewayd's outbox folder.
	outboxDir string
}

func newWorld(t *testing.T, o worldOptions) *world {
	t.Helper()
	w := &world{t: t, poll: o.poll}
	if o.brokerConf != nil {
		port, dir := testenv.FreePort(t), t.TempDir()
		w.broker = testenv.MosquittoConf(t, dir, o.brokerConf(port, dir), port)
	} else {
		w.broker = testenv.Mosquitto(t)
	}
	w.influx, w.db = testenv.NewDatabase(t)

	httpPort := testenv.FreePort(t)
	w.cloudAPI = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	out, err := exec.Command(filepath.Join(binDir, "cloudd"), "token", "create", "-tokens", tokens, "-name", "e2e", "-role", "operator").Output()
	if err != nil {
		t.Fatalf("cloudd token create: %v", err)
	}
	w.apiToken = strings.TrimSpace(string(out))
	w.cloud = startProc(t, filepath.Join(binDir, "cloudd"), append([]string{
		"-broker-url", w.broker.URL(), "-client-id", "cloudd-" + w.db, "-influx-url", w.influx.URL,
		"-influx-bucket", w.db, "-http", fmt.Sprintf("127.0.0.1:%d", httpPort), "-tokens", tokens, "-log-level", "warn"}, o.cloudArgs...)...)
	w.waitHTTP(w.cloudAPI + "/healthz")

	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: o.bays, Buses: o.buses, Ultrasonic: 0.5, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	lot.Pause() // cars move only when the test says so
	t.Cleanup(func() { lot.Close() })
	w.lot = lot

	dir := t.TempDir()
	w.outbox = filepath.Join(dir, "outbox")
	if o.outboxDir != "" {
		w.outbox = o.outboxDir
	}
	brokerURL := w.broker.URL()
	if o.proxy {
		w.proxy = testenv.NewProxy(t, fmt.Sprintf("127.0.0.1:%d", w.broker.Port))
		brokerURL = w.proxy.URL()
	}
	statusPort := testenv.FreePort(t)
	w.status = fmt.Sprintf("http://127.0.0.1:%d", statusPort)
	var b strings.Builder
	fmt.Fprintf(&b, "site: e2e\ngateway: gw-1\nlog: {level: info}\nuplink:\n  brokers: [%s]\n  reconnect_max: 1s\n", brokerURL)
	if o.keepalive > 0 {
		fmt.Fprintf(&b, "  keepalive: %s\n", o.keepalive)
	}
	fmt.Fprintf(&b, "outbox:\n  path: %s\nstatus:\n  listen: 127.0.0.1:%d\npipeline:\n  health_interval: 1s\n  max_silence: 1h\n",
		w.outbox, statusPort)
	b.WriteString("buses:\n")
	for _, bus := range lot.Buses() {
		fmt.Fprintf(&b, "  - {name: %s, port: %s, baud: 19200, parity: even, stop_bits: 1, timeout: 200ms}\n", bus.Name, bus.Path)
	}
	b.WriteString(o.moreBuses)
	b.WriteString("devices:\n")
	b.WriteString(o.moreDevices)
	for _, bay := range lot.Bays() {
		fmt.Fprintf(&b, "  - {id: bay-%03d, driver: modbus, bus: rs485-%d, unit: %d, profile: %s, poll: %s, deadband: {distance_cm: 50}, tags: {lot: l1, zone: z%d, bay: \"%03d\"}}\n",
			bay.Bay, bay.Bus+1, bay.Unit, bay.Model.Profile(), o.poll, bay.Bus+1, bay.Bay)
	}
	b.WriteString(o.extra)
	w.gwCfg = filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(w.gwCfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	w.gw = startProc(t, filepath.Join(binDir, "gatewayd"), "-config", w.gwCfg)
	w.waitHTTP(w.status + "/healthz")
	return w
}

func (w *world) waitHTTP(url string) {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s did not answer: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restartGateway starts gatewayd again on the same config and outbox.
func (w *world) restartGateway() {
	w.gw.start(w.t)
	w.waitHTTP(w.status + "/healthz")
}

// change is one scripted occupancy change.
type change struct {
	bay      int
	occupied bool
	at       time.Time
}

// toggle flips a bay and records when.
func (w *world) toggle(bay int) change {
	occ, err := w.lot.Occupied(bay)
	if err != nil {
		w.t.Fatal(err)
	}
	at := time.Now()
	if err := w.lot.SetOccupied(bay, !occ); err != nil {
		w.t.Fatal(err)
	}
	return change{bay: bay, occupied: !occ, at: at}
}

// stream toggles bays round-robin every step until stop is closed.
func (w *world) stream(step time.Duration, stop <-chan struct{}) <-chan []change {
	out := make(chan []change, 1)
	go func() {
		var log []change
		n := len(w.lot.Bays())
		for i := 0; ; i++ {
			select {
			case <-stop:
				out <- log
				return
			case <-time.After(step):
			}
			log = append(log, w.toggle((i*7)%n+1))
		}
	}()
	return out
}

// point is one parking_bay point read back from InfluxDB.
type point struct {
	t        time.Time
	occupied bool
	tags     map[string]string
}

func (w *world) bayPoints() map[int][]point {
	w.t.Helper()
	series, err := w.influx.Query(w.db, `SELECT "occupied" FROM "parking_bay" GROUP BY *`)
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[int][]point{}
	for _, s := range series {
		var bay int
		fmt.Sscanf(s.Tags["bay"], "%d", &bay)
		for _, row := range s.Values {
			ns, _ := row[0].(json.Number).Int64()
			occ, _ := row[1].(bool)
			out[bay] = append(out[bay], point{t: time.Unix(0, ns), occupied: occ, tags: s.Tags})
		}
	}
	for _, ps := range out {
		sort.Slice(ps, func(i, j int) bool { return ps[i].t.Before(ps[j].t) })
	}
	return out
}

// transitions reduces a bay's points to its changes of value.
func transitions(ps []point) []point {
	var out []point
	for i, p := range ps {
		if i == 0 || p.occupied != ps[i-1].occupied {
			out = append(out, p)
		}
	}
	return out
}

// gatewayStats is cloudd's view of the gateway.
type gatewayStats struct {
	Online   bool              `json:"online"`
	Messages uint64            `json:"messages"`
	Records  uint64            `json:"records"`
	Rejected map[string]uint64 `json:"rejected"`
	Dropped  map[string]uint64 `json:"records_dropped"`
	Seq      struct {
		LastSeq    uint64 `json:"last_seq"`
		GapsOpen   uint64 `json:"gaps_open"`
		Lost       uint64 `json:"lost"`
		Reordered  uint64 `json:"reordered"`
		Duplicates uint64 `json:"duplicates"`
		Conflicts  uint64 `json:"conflicts"`
		Resets     uint64 `json:"resets"`
		// Declared by the gateway (…/dropped): lost on purpose or to
		// damage, and numbers no message carried (kill -9 leaves some).
		DeclaredLost uint64 `json:"declared_lost"`
		Skipped      uint64 `json:"skipped"`
	} `json:"seq"`
}

func (w *world) cloudStats() gatewayStats {
	w.t.Helper()
	var g gatewayStats
	resp := w.callAPI("GET", "/api/v1/gateways/e2e/gw-1", "")
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return g
	}
	if err := json.NewDecoder(resp.Body).Decode(&g); err != nil {
		w.t.Fatal(err)
	}
	return g
}

// callAPI sends a request to cloudd's HTTP API with the world's operator
// token; a refused token fails the test.
func (w *world) callAPI(method, path, body string) *http.Response {
	w.t.Helper()
	req, err := http.NewRequest(method, w.cloudAPI+path, strings.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+w.apiToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		w.t.Fatalf("%s %s: HTTP %d %s", method, path, resp.StatusCode, b)
	}
	return resp
}

// gatewaySeq is the outbox's next sequence number as the status page shows it.
func (w *world) gatewayStatus() map[string]any {
	resp, err := http.Get(w.status + "/status")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return m
}

// settle waits until every bay's last point in InfluxDB equals the
// simulator's state and the gateway's outbox is empty.
func (w *world) settle(timeout time.Duration) map[int][]point {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pts := w.bayPoints()
		ok := true
		for _, bay := range w.lot.Bays() {
			occ, _ := w.lot.Occupied(bay.Bay)
			ps := pts[bay.Bay]
			if len(ps) == 0 || ps[len(ps)-1].occupied != occ {
				ok = false
				break
			}
		}
		if ok {
			if st := w.gatewayStatus(); st != nil {
				if ob, _ := st["outbox"].(map[string]any); ob != nil && ob["unacked_messages"] == float64(0) {
					return pts
				}
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("InfluxDB did not converge on the simulator's state within %v", timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkChanges asserts that every scripted change appears, in order, with
// an observation time between the change and one poll (plus slack) later,
// and nothing else changed.
func (w *world) checkChanges(pts map[int][]point, initial map[int]bool, changes []change, slack time.Duration) {
	w.t.Helper()
	perBay := map[int][]change{}
	for _, c := range changes {
		perBay[c.bay] = append(perBay[c.bay], c)
	}
	for _, bay := range w.lot.Bays() {
		tr := transitions(pts[bay.Bay])
		want := perBay[bay.Bay]
		if len(tr) == 0 || tr[0].occupied != initial[bay.Bay] {
			w.t.Errorf("bay %d: first point %v, want the initial state %v", bay.Bay, tr, initial[bay.Bay])
			continue
		}
		got := tr[1:]
		if len(got) != len(want) {
			w.t.Errorf("bay %d: %d changes in InfluxDB, the simulator made %d", bay.Bay, len(got), len(want))
			continue
		}
		for i := range want {
			if got[i].occupied != want[i].occupied {
				w.t.Errorf("bay %d change %d: occupied=%v in InfluxDB, simulator set %v", bay.Bay, i, got[i].occupied, want[i].occupied)
			}
			lag := got[i].t.Sub(want[i].at)
			if lag < 0 || lag > w.poll+slack {
				w.t.Errorf("bay %d change %d: observed %v after the change, want within one poll (%v) + %v", bay.Bay, i, lag, w.poll, slack)
			}
		}
		p := pts[bay.Bay][0]
		wantTags := map[string]string{"site": "e2e", "gateway": "gw-1", "device": fmt.Sprintf("bay-%03d", bay.Bay),
			"lot": "l1", "zone": fmt.Sprintf("z%d", bay.Bus+1), "bay": fmt.Sprintf("%03d", bay.Bay)}
		for k, v := range wantTags {
			if p.tags[k] != v {
				w.t.Errorf("bay %d: tag %s=%q, want %q (tags %v)", bay.Bay, k, p.tags[k], v, p.tags)
			}
		}
	}
}

// checkLot asserts the last parking_lot point per zone matches the simulator.
func (w *world) checkLot() {
	w.t.Helper()
	want := map[string][2]int{} // zone → capacity, occupied
	for _, bay := range w.lot.Bays() {
		z := fmt.Sprintf("z%d", bay.Bus+1)
		c := want[z]
		c[0]++
		if occ, _ := w.lot.Occupied(bay.Bay); occ {
			c[1]++
		}
		want[z] = c
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		series, err := w.influx.Query(w.db, `SELECT last("capacity"), last("occupied"), last("free") FROM "parking_lot" WHERE "lot"='l1' GROUP BY "zone"`)
		if err != nil {
			w.t.Fatal(err)
		}
		got := map[string][3]int64{}
		for _, s := range series {
			var v [3]int64
			for i := 0; i < 3; i++ {
				v[i], _ = s.Values[0][i+1].(json.Number).Int64()
			}
			got[s.Tags["zone"]] = v
		}
		ok := len(got) == len(want)
		for z, c := range want {
			g := got[z]
			if g[0] != int64(c[0]) || g[1] != int64(c[1]) || g[2] != int64(c[0]-c[1]) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("parking_lot: InfluxDB has %v (capacity, occupied, free), the simulator %v (capacity, occupied)", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (w *world) initialState() map[int]bool {
	m := map[int]bool{}
	for _, bay := range w.lot.Bays() {
		m[bay.Bay], _ = w.lot.Occupied(bay.Bay)
	}
	return m
}

// waitInitial waits until every bay has its first point in InfluxDB.
func (w *world) waitInitial() {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(w.bayPoints()) < len(w.lot.Bays()) {
		if time.Now().After(deadline) {
			w.t.Fatalf("only %d of %d bays reached InfluxDB", len(w.bayPoints()), len(w.lot.Bays()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *world) checkSequence(minMessages uint64) gatewayStats {
	w.t.Helper()
	g := w.cloudStats()
	if g.Seq.Lost != 0 || g.Seq.GapsOpen != 0 || g.Seq.DeclaredLost != 0 {
		w.t.Errorf("cloudd saw sequence gaps or declared losses: %+v", g.Seq)
	}
	if len(g.Rejected) != 0 || len(g.Dropped) != 0 {
		w.t.Errorf("cloudd rejected messages: %v, dropped records: %v", g.Rejected, g.Dropped)
	}
	if g.Seq.Conflicts != 0 {
		w.t.Errorf("cloudd saw %d sequence numbers again with different content", g.Seq.Conflicts)
	}
	if g.Messages < minMessages || g.Seq.LastSeq < minMessages {
		w.t.Errorf("cloudd saw %d messages up to seq %d, want at least %d", g.Messages, g.Seq.LastSeq, minMessages)
	}
	return g
}

var _ = context.Background

// startBenchProc starts a child for a benchmark; its output is discarded
// unless the benchmark fails.
func startBenchProc(b *testing.B, name string, args ...string) *exec.Cmd {
	b.Helper()
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("%s output:\n%s", name, tail(out.String(), 4096))
		}
	})
	return cmd
}
