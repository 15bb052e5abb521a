package natsbus_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/natsbus/natstest"
	"github.com/luling-edge/luling/gateway/outbox"
	"github.com/luling-edge/luling/gateway/uplink"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

var (
	buildOnce sync.Once
	clouddBin string
	buildErr  error
)

// cloudd builds cmd/cloudd once per test binary.
func cloudd(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "luling-natsbus-bin-")
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/cloudd")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build cloudd: %v\n%s", err, out)
			return
		}
		clouddBin = filepath.Join(dir, "cloudd")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return clouddBin
}

// proc is a cloudd process whose output is kept for failure reports.
type proc struct {
	name  string
	cmd   *exec.Cmd
	out   *testenv.Buffer
	api   string
	token string // for the failure report
	done  chan struct{}
}

func startCloudd(t *testing.T, name, token string, args ...string) *proc {
	t.Helper()
	port := testenv.FreePort(t)
	p := &proc{name: name, token: token, out: new(testenv.Buffer), api: "http://127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{})}
	p.cmd = exec.Command(cloudd(t), append(args, "-client-id", name, "-http", "127.0.0.1:"+strconv.Itoa(port))...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() && p.alive() {
			m := p.metrics(t, p.token)
			t.Logf("%s: received %v, written %v, acked %v, gateway acks %v, queued %v, partitions %v, influx errors %v", name,
				m["luling_cloud_ingest_received_total"], m["luling_cloud_ingest_written_total"], m["luling_cloud_ingest_acked_total"],
				m["luling_cloud_ingest_gateway_acks_total"], m["luling_cloud_ingest_queued"], m["luling_cloud_nats_partitions_owned"], m["luling_cloud_influx_errors_total"])
		}
		if t.Failed() {
			out := p.out.String()
			if len(out) > 6000 {
				out = out[len(out)-6000:]
			}
			t.Logf("--- %s output (tail):\n%s", name, out)
		}
	})
	return p
}

func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// metrics returns cloudd's /metrics as metric name → sum over all labels.
func (p *proc) metrics(t *testing.T, token string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", p.api+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s /metrics: HTTP %d %s", p.name, resp.StatusCode, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out
}

// gateway is the real edge delivery path: a durable outbox and the uplink
// that publishes it over MQTT, keeps each message until cloudd confirms it
// and sends again what cloudd asks for.
type gateway struct {
	name string
	ob   *outbox.Outbox
	up   *uplink.Uplink
}

func startGateway(t *testing.T, ctx context.Context, wg *sync.WaitGroup, site, name string, brokers []string) *gateway {
	t.Helper()
	ob, err := outbox.Open(outbox.Options{Dir: t.TempDir(), Site: site, Gateway: name, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ob.Close() })
	up, err := uplink.New(ob, uplink.Options{
		Brokers: brokers, Site: site, Gateway: name,
		KeepAlive: 10 * time.Second, ConnectTimeout: 5 * time.Second, ReconnectMax: 2 * time.Second,
		AckTimeout: 10 * time.Second, ConfirmWait: 8 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		up.Run(ctx)
	}()
	return &gateway{name: name, ob: ob, up: up}
}

var t0 = time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)

// add appends message i: 5 readings with times unique to the gateway.
func (g *gateway) add(t *testing.T, gi, i int) {
	recs := make([]payload.Record, 5)
	for k := range recs {
		recs[k] = payload.Record{Measurement: "pv", Tags: map[string]string{"device": "inv-" + strconv.Itoa(k)},
			Fields: map[string]payload.Value{"ac_power_w": payload.Float(float64(gi*1000 + i))},
			Time:   t0.Add(time.Duration(i) * time.Second)}
	}
	if err := g.ob.Append(context.Background(), payload.Telemetry, recs); err != nil {
		t.Fatalf("%s: append: %v", g.name, err)
	}
}

// A cloudd instance joining, then one NATS node and one of the three
// cloudd instances killed, all while the gateways send, lose no reading
// and report no false gap: every record is in InfluxDB exactly once, every
// gateway's outbox is confirmed to the end, and the surviving instances
// count nothing lost, declared lost, in conflict or still missing.
func TestFailoverLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster, InfluxDB and three cloudd processes")
	}
	bin := cloudd(t)
	cluster := natstest.Start(t, 3)
	influx, db := testenv.NewDatabase(t)
	tokens, token := viewerToken(t, bin)

	mqttURLs := cluster.MQTTURLs()
	common := []string{"-engine", "nats", "-nats-url", cluster.URLs(), "-broker-url", strings.Join(mqttURLs, ","),
		"-nats-partitions", "6", "-nats-ack-wait", "3s", "-nats-lease-ttl", "8s", "-seq-grace", "60s",
		"-influx-url", influx.URL, "-influx-bucket", db, "-tokens", tokens, "-log-level", "info"}
	var clouds []*proc
	for i := range 2 {
		clouds = append(clouds, startCloudd(t, fmt.Sprintf("cloudd-%d", i+1), token, common...))
	}
	owned := func(p *proc) float64 { return p.metrics(t, token)["luling_cloud_nats_partitions_owned"] }
	spread := func(n float64) func() bool {
		return func() bool {
			for _, p := range clouds {
				if !p.alive() {
					t.Fatalf("%s exited", p.name)
				}
				if owned(p) != n {
					return false
				}
			}
			return true
		}
	}
	testenv.WaitFor(t, 90*time.Second, "three partitions on each of two cloudd", spread(3))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	const gateways, messages = 6, 60
	var gws []*gateway
	for i := range gateways {
		// Each gateway starts on another node; two of them on the one killed.
		brokers := append(append([]string(nil), mqttURLs[i%3:]...), mqttURLs[:i%3]...)
		gws = append(gws, startGateway(t, ctx, &wg, "city", fmt.Sprintf("gw-%d", i+1), brokers))
	}
	send := func(from, to int) {
		for i := from; i < to; i++ {
			for gi, g := range gws {
				g.add(t, gi, i)
			}
			time.Sleep(20 * time.Millisecond) // spread the messages over the changes
		}
	}
	send(0, messages/3)
	testenv.WaitFor(t, 60*time.Second, "the first messages confirmed by cloudd", func() bool {
		for _, g := range gws {
			if g.up.DeliveryStats().Acks == 0 {
				return false
			}
		}
		return true
	})

	// A third instance joins while the gateways send: two partitions are
	// handed over to it.
	clouds = append(clouds, startCloudd(t, "cloudd-3", token, common...))
	send(messages/3, 2*messages/3)
	testenv.WaitFor(t, 90*time.Second, "two partitions on each of three cloudd", spread(2))

	// The failures, while the gateways keep sending.
	cluster.Kill(0)
	clouds[1].kill()
	send(2*messages/3, messages)

	live := []*proc{clouds[0], clouds[2]}
	testenv.WaitFor(t, 120*time.Second, "every message confirmed to every gateway", func() bool {
		for _, g := range gws {
			if g.ob.Stats().Unacked.Messages != 0 {
				return false
			}
		}
		return true
	})
	testenv.WaitFor(t, 30*time.Second, "the killed instance's partitions taken over", func() bool {
		return owned(live[0])+owned(live[1]) == 6
	})

	got := countByGateway(t, influx, db, "SELECT count(ac_power_w) FROM pv GROUP BY gateway")
	for _, g := range gws {
		if got[g.name] != strconv.Itoa(messages*5) {
			t.Errorf("%s: %s readings in InfluxDB, want %d", g.name, got[g.name], messages*5)
		}
		if d := g.ob.Stats().Dropped(); d.Messages != 0 {
			t.Errorf("%s: outbox dropped %+v", g.name, d)
		}
	}
	var moved, handed float64
	for _, p := range live {
		m := p.metrics(t, token)
		for _, name := range []string{"luling_cloud_seq_lost_total", "luling_cloud_seq_declared_lost_total", "luling_cloud_seq_conflicts_total",
			"luling_cloud_seq_gaps_open", "luling_cloud_seq_resets_total", "luling_cloud_seq_far_below_total", "luling_cloud_rejected_total"} {
			if m[name] != 0 {
				t.Errorf("%s: %s = %v, want 0", p.name, name, m[name])
			}
		}
		moved += m["luling_cloud_nats_partitions_acquired_total"]
		handed += m["luling_cloud_nats_partitions_released_total"]
		t.Logf("%s: written %v messages, duplicates %v, reordered %v, late %v, partitions taken %v, handed over %v, lost %v", p.name,
			m["luling_cloud_ingest_written_total"], m["luling_cloud_seq_duplicates_total"], m["luling_cloud_seq_reordered_total"], m["luling_cloud_seq_late_total"],
			m["luling_cloud_nats_partitions_acquired_total"], m["luling_cloud_nats_partitions_released_total"], m["luling_cloud_nats_partitions_lost_total"])
	}
	if moved < 6 || handed < 2 {
		t.Errorf("the survivors took %v partitions in all and handed %v over, want at least 6 (their own and the killed one's) and 2 (to the instance that joined)", moved, handed)
	}
	var resent uint64
	for _, g := range gws {
		resent += g.up.DeliveryStats().Resent
	}
	t.Logf("gateways resent %d messages on cloudd's request", resent)
}

// viewerToken makes a tokens file with one viewer token for cloudd's
// /metrics and returns its path and the token.
func viewerToken(t *testing.T, bin string) (path, token string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "tokens.json")
	out, err := exec.Command(bin, "token", "create", "-tokens", path, "-name", "test", "-role", "viewer").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	return path, strings.TrimSpace(string(out))
}

// countByGateway runs a "SELECT count(...) ... GROUP BY gateway" query and
// returns each gateway's count as InfluxDB printed it.
func countByGateway(t *testing.T, influx *testenv.Influx, db, q string) map[string]string {
	t.Helper()
	rows, err := influx.Query(db, q)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range rows {
		for _, r := range s.Rows() {
			got[fmt.Sprint(r["gateway"])] = fmt.Sprint(r["count"])
		}
	}
	return got
}
