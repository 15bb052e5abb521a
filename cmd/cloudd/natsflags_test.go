package main

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// The engine flags: the NATS engine's settings reach its configuration,
// and every mistake is named with what was expected.
func TestEngineFlags(t *testing.T) {
	c, err := parseFlags([]string{"-engine", "nats", "-nats-url", "nats://a:4222, nats://b:4222", "-broker-url", "tcp://a:1883,tcp://b:1883",
		"-client-id", "cloudd.host-1", "-nats-partitions", "24", "-nats-replicas", "1", "-nats-ack-wait", "5s", "-nats-lease-ttl", "3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	n := c.engine.nats
	if strings.Join(n.URLs, " ") != "nats://a:4222 nats://b:4222" || n.Instance != "cloudd-host-1" || n.Partitions != 24 || n.Replicas != 1 ||
		n.AckWait != 5*time.Second || n.LeaseTTL != 3*time.Second || n.Stream != "LULING" {
		t.Fatalf("nats config %+v", n)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-engine", "kafka"}, `-engine "kafka": want mqtt or nats`},
		{[]string{"-engine", "nats", "-http", ""}, "-engine nats needs -nats-url"},
		{[]string{"-nats-url", "nats://a:4222"}, "needs -engine nats"},
		{[]string{"-broker-url", "tcp://a:1883,tcp://b:1883"}, "one URL with -engine mqtt"},
		{[]string{"-engine", "nats", "-nats-url", "a:4222", "-http", ""}, `"a:4222": want nats://host:port`},
		{[]string{"-engine", "nats", "-nats-url", "nats://a:4222"}, "-engine nats with -http needs -broker-url"},
		{[]string{"-engine", "nats", "-nats-url", "nats://a:4222", "-http", "", "-nats-partitions", "0"}, `-nats-partitions "0": want an integer from 1 to 1024`},
		{[]string{"-engine", "nats", "-nats-url", "nats://a:4222", "-http", "", "-nats-replicas", "9"}, `-nats-replicas "9"`},
		{[]string{"-engine", "nats", "-nats-url", "nats://a:4222", "-http", "", "-nats-ack-wait", "90s"}, "-nats-ack-wait 1m30s must be below -seq-grace 1m0s"},
		{[]string{"-engine", "nats", "-nats-url", "nats://a:4222", "-http", "", "-nats-lease-ttl", "10ms"}, `-nats-lease-ttl "10ms": want a duration of at least 1s`},
		{[]string{"-engine", "nats", "-nats-url", "nats://a:4222", "-http", "", "-nats-stream", "a.b"}, `stream "a.b"`},
	} {
		_, err := parseFlags(c.args, io.Discard)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err %v, want a usage error with %q", c.args, err, c.want)
		}
	}
}
