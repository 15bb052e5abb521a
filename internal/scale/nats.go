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

	"github.com/luling-edge/luling/internal/testenv"
)

// NATSPartitions is the stream's partition count in the NATS runs: a
// multiple of 1 and 3 instances.
const NATSPartitions = 12

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
