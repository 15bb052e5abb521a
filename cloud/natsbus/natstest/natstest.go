// Package natstest starts a real NATS cluster for tests: n nats-server
// nodes embedded in the test process, each with its own JetStream store,
// client, route and MQTT ports on loopback. It is a package of its own so
// that only the tests that need a cluster compile the server.
package natstest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Cluster is a running cluster. Node i can be stopped (Kill) and started
// again (Restart) with the same store and ports.
type Cluster struct {
	t     testing.TB
	mu    sync.Mutex
	opts  []*server.Options
	nodes []*server.Server
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start starts an n-node cluster (n >= 1) with JetStream and the MQTT
// listener on every node, waits until JetStream answers, and stops it when
// the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	routes := make([]string, n)
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       freePort(t),
			JetStream:  true,
			StoreDir:   filepath.Join(t.TempDir(), "js"),
			NoLog:      true,
			NoSigs:     true,
			MQTT:       server.MQTTOpts{Host: "127.0.0.1", Port: freePort(t)},
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: "luling", Host: "127.0.0.1", Port: freePort(t)}
			routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Cluster.Port)
		}
		c.opts = append(c.opts, o)
	}
	if n > 1 {
		for _, o := range c.opts {
			o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}
	}
	c.nodes = make([]*server.Server, n)
	for i := range n {
		// The ports were free when picked, not when bound: on a machine
		// running many test packages another may take one meanwhile,
		// and a node that cannot listen never gets ready. Such a node
		// starts again on fresh ports (the nodes started before it keep
		// its old route address in their list, a dead entry the route
		// gossip makes up for).
		for attempt := 1; ; attempt++ {
			err := c.tryStart(i)
			if err == nil {
				break
			}
			if attempt == 3 {
				t.Fatalf("nats node %d: %v (3 attempts)", i+1, err)
			}
			t.Logf("nats node %d: %v; again on fresh ports", i+1, err)
			o := c.opts[i]
			o.Port, o.MQTT.Port = freePort(t), freePort(t)
			if n > 1 {
				o.Cluster.Port = freePort(t)
				routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Cluster.Port)
				for _, o := range c.opts[i:] {
					o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
				}
			}
		}
	}
	t.Cleanup(func() {
		for i := range n {
			c.Kill(i)
		}
	})
	c.WaitJetStream()
	return c
}

func (c *Cluster) start(i int) {
	if err := c.tryStart(i); err != nil {
		c.t.Fatalf("nats node %d: %v", i+1, err)
	}
}

// tryStart starts node i and waits until it listens; a node that does
// not is shut down again.
func (c *Cluster) tryStart(i int) error {
	o := *c.opts[i] // a server keeps and changes its options
	s, err := server.NewServer(&o)
	if err != nil {
		return err
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return fmt.Errorf("not ready for connections within 30s (ports %d, %d, %d)", o.Port, o.MQTT.Port, o.Cluster.Port)
	}
	c.mu.Lock()
	c.nodes[i] = s
	c.mu.Unlock()
	return nil
}

// Kill stops node i (its clients and routes drop at once).
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	s := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts node i again with its store.
func (c *Cluster) Restart(i int) { c.start(i) }

// URLs are the client URLs of all nodes, comma-separated.
func (c *Cluster) URLs() string {
	var out []string
	for _, o := range c.opts {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(out, ",")
}

// MQTTURLs are the MQTT listener URLs of all nodes.
func (c *Cluster) MQTTURLs() []string {
	var out []string
	for _, o := range c.opts {
		out = append(out, fmt.Sprintf("tcp://127.0.0.1:%d", o.MQTT.Port))
	}
	return out
}

// WaitJetStream waits until the cluster's JetStream answers API requests
// (its meta leader is elected).
func (c *Cluster) WaitJetStream() {
	c.t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1))
	if err != nil {
		c.t.Fatalf("connect to the nats cluster: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nats cluster: jetstream not ready within 60s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
