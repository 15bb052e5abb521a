package scale

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/luling-edge/luling/cloud/natsbus"
	"github.com/luling-edge/luling/internal/citysim"
	"github.com/luling-edge/luling/internal/testenv"
)

// NATSPartitions is the stream's partition count in the NATS runs: a
// multiple of 1 and 3 instances.
const NATSPartitions = 12

// EvenGateways returns n gateway ids of site that spread evenly over the
// NATS engine's partitions: n/partitions in each (n must be a multiple),
// so that every instance holding an equal number of partitions carries an
// equal share of the city. They are the default ids (citysim.GatewayID:
// gw-00001, …) in order, leaving out those whose partition is full.
//
// Why: the stream's transform hashes site and gateway (FNV-1a,
// natsbus.Partition), and partition n goes to instance n mod count, so a
// gateway's instance is its hash mod count whatever the partition count. A
// few hundred gateways named gw-00001… spread unevenly by chance (250 of
// them over 3 instances: 91, 79, 80, so the busiest carries 36% and caps
// a 3-instance drain at 2.75 times one); a city of thousands evens out.
func EvenGateways(site string, n, partitions int) ([]string, error) {
	if partitions < 1 || n < 1 || n%partitions != 0 {
		return nil, fmt.Errorf("scale: %d gateways over %d partitions: want a positive multiple of the partitions", n, partitions)
	}
	per := n / partitions
	count := make([]int, partitions)
	ids := make([]string, 0, n)
	for i := 0; len(ids) < n; i++ {
		if i >= 100*n {
			return nil, fmt.Errorf("scale: no %d even gateways over %d partitions among the first %d ids", n, partitions, i)
		}
		id := citysim.GatewayID(i)
		if p := natsbus.Partition(site, id, partitions); count[p] < per {
			count[p]++
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// NATS is a 3-node NATS cluster with JetStream and the MQTT listener, each
// node a nats-server process (built from the module's own nats-server
// version), with cloudd -engine nats: the instances share the stream's
// partitions. The simulated gateways are spread over the three MQTT
// listeners.
var NATS = Engine{Name: "nats (3 nodes, JetStream R3)", Start: startNATS}

// natsServer builds nats-server once per test binary, at the version in
// go.mod (no download: the module is already a dependency), next to cloudd
// in the folder Cleanup removes.
var natsServer = sync.OnceValues(func() (string, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(build.dir, "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build nats-server: %v\n%s", err, out)
	}
	return bin, nil
})

func natsServerBinary(tb testing.TB) string {
	tb.Helper()
	clouddBinary(tb) // makes the build folder
	bin, err := natsServer()
	if err != nil {
		tb.Fatalf("scale: %v", err)
	}
	return bin
}

func startNATS(tb testing.TB) Endpoint {
	tb.Helper()
	bin := natsServerBinary(tb)
	const nodes = 3
	type node struct{ client, route, mqtt int }
	var ns []node
	var routes []string
	for range nodes {
		n := node{testenv.FreePort(tb), testenv.FreePort(tb), testenv.FreePort(tb)}
		ns = append(ns, n)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", n.route))
	}
	var urls, mqttURLs []string
	for i, n := range ns {
		dir := tb.TempDir()
		conf := filepath.Join(dir, "nats-server.conf")
		err := os.WriteFile(conf, []byte(fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster { name: scale, listen: 127.0.0.1:%d, routes: [%s] }
mqtt { listen: 127.0.0.1:%d, stream_replicas: 3, max_ack_pending: 1024 }
`, i+1, n.client, filepath.Join(dir, "js"), n.route, strings.Join(routes, ", "), n.mqtt)), 0o600)
		if err != nil {
			tb.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", conf)
		out := &testenv.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			tb.Fatalf("scale: start nats-server: %v", err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		tb.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			if tb.Failed() {
				tb.Logf("--- nats-server n%d output:\n%s", i+1, out.String())
			}
		})
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.client))
		mqttURLs = append(mqttURLs, fmt.Sprintf("tcp://127.0.0.1:%d", n.mqtt))
	}
	waitJetStream(tb, strings.Join(urls, ","))
	return Endpoint{
		GatewayURLs: mqttURLs,
		CloudArgs: func(i, n int) []string {
			return []string{"-engine", "nats", "-nats-url", strings.Join(urls, ","), "-broker-url", strings.Join(mqttURLs, ","),
				"-nats-partitions", fmt.Sprint(NATSPartitions), "-client-id", fmt.Sprintf("cloudd-scale-%d", i)}
		},
		PIDs: children("nats-server"),
		Hold: func(tb testing.TB) func() { return holdPartitions(tb, strings.Join(urls, ",")) },
	}
}

// holdPartitions pauses every partition consumer (part-N) of every stream
// in the cluster, so that the messages stay in the stream while the cloudd
// instances keep running and holding their leases; release resumes them
// all at once. Call it after the instances set the consumers up: their
// set-up updates each consumer's configuration, which would resume it.
func holdPartitions(tb testing.TB, urls string) (release func()) {
	tb.Helper()
	nc, err := nats.Connect(urls)
	if err != nil {
		tb.Fatalf("scale: connect to nats: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type held struct{ stream, consumer string }
	var hs []held
	streams := js.StreamNames(ctx)
	for name := range streams.Name() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			tb.Fatalf("scale: stream %s: %v", name, err)
		}
		cons := s.ConsumerNames(ctx)
		for c := range cons.Name() {
			if strings.HasPrefix(c, "part-") {
				hs = append(hs, held{name, c})
			}
		}
		if err := cons.Err(); err != nil {
			tb.Fatalf("scale: consumers of %s: %v", name, err)
		}
	}
	if err := streams.Err(); err != nil {
		tb.Fatalf("scale: streams: %v", err)
	}
	if len(hs) == 0 {
		tb.Fatal("scale: no partition consumer (part-N) to hold: the cloudd instances set none up")
	}
	for _, h := range hs {
		r, err := js.PauseConsumer(ctx, h.stream, h.consumer, time.Now().Add(time.Hour))
		if err != nil || !r.Paused {
			tb.Fatalf("scale: pause consumer %s of %s: %v", h.consumer, h.stream, err)
		}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, h := range hs {
				if r, err := js.ResumeConsumer(ctx, h.stream, h.consumer); err != nil || r.Paused {
					tb.Fatalf("scale: resume consumer %s of %s: %v", h.consumer, h.stream, err)
				}
			}
		})
	}
}

// waitJetStream waits until the cluster's JetStream answers (its meta
// leader is elected).
func waitJetStream(tb testing.TB, urls string) {
	tb.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		tb.Fatalf("scale: connect to nats: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	testenv.WaitFor(tb, 90*time.Second, "the nats cluster's jetstream", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
}
