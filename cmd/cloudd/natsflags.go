package main

import (
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/natsbus"
	"github.com/luling-edge/luling/cloud/web"
)

// engineConfig chooses where gateway messages come from: one MQTT broker
// (-engine mqtt, the default: -broker-url or the embedded broker) or a
// NATS JetStream cluster shared by several cloudd instances (-engine nats).
type engineConfig struct {
	engine     string
	natsURL    string
	stream     string
	partitions string
	replicas   string
	ackWait    string
	leaseTTL   string

	urls []string // -nats-url, split
	nats natsbus.Config
}

func (e *engineConfig) register(fs *flag.FlagSet, env func(name, def string) string) {
	fs.StringVar(&e.engine, "engine", env("ENGINE", "mqtt"), "where gateway messages come from: mqtt (one broker: -broker-url or the embedded one) or nats (a NATS JetStream cluster shared by several cloudd instances) [LULING_CLOUD_ENGINE]")
	fs.StringVar(&e.natsURL, "nats-url", env("NATS_URL", ""), "-engine nats: the cluster's NATS URLs, comma-separated (nats://a:4222,nats://b:4222) [LULING_CLOUD_NATS_URL]")
	fs.StringVar(&e.stream, "nats-stream", env("NATS_STREAM", natsbus.DefaultStream), "-engine nats: stream name, also the prefix of its buckets [LULING_CLOUD_NATS_STREAM]")
	fs.StringVar(&e.partitions, "nats-partitions", env("NATS_PARTITIONS", strconv.Itoa(natsbus.DefaultPartitions)), "-engine nats: partitions of the stream, fixed once it exists; a multiple of the instance count spreads evenly [LULING_CLOUD_NATS_PARTITIONS]")
	fs.StringVar(&e.replicas, "nats-replicas", env("NATS_REPLICAS", strconv.Itoa(natsbus.DefaultReplicas)), "-engine nats: replicas of the streams and buckets (3 in a 3-node cluster, 1 for a single server) [LULING_CLOUD_NATS_REPLICAS]")
	fs.StringVar(&e.ackWait, "nats-ack-wait", env("NATS_ACK_WAIT", natsbus.DefaultAckWait.String()), "-engine nats: an unacknowledged message comes again after this long; below -seq-grace [LULING_CLOUD_NATS_ACK_WAIT]")
	fs.StringVar(&e.leaseTTL, "nats-lease-ttl", env("NATS_LEASE_TTL", natsbus.DefaultLeaseTTL.String()), "-engine nats: a stopped instance's partitions move after this long [LULING_CLOUD_NATS_LEASE_TTL]")
}

// check validates the engine flags after fs.Parse.
func (e *engineConfig) check(c *config) error {
	switch e.engine {
	case "mqtt":
		if e.natsURL != "" {
			return fmt.Errorf("-nats-url %q needs -engine nats", e.natsURL)
		}
		if strings.Contains(c.brokerURL, ",") {
			return fmt.Errorf("-broker-url %q: one URL with -engine mqtt (several only name a NATS cluster's MQTT listeners with -engine nats)", c.brokerURL)
		}
		return nil
	case "nats":
	default:
		return fmt.Errorf("-engine %q: want mqtt or nats", e.engine)
	}
	if e.natsURL == "" {
		return fmt.Errorf("-engine nats needs -nats-url: the cluster's NATS URLs, comma-separated (nats://a:4222,nats://b:4222)")
	}
	e.urls = nil
	for _, u := range strings.Split(e.natsURL, ",") {
		u = strings.TrimSpace(u)
		scheme, rest, ok := strings.Cut(u, "://")
		if !ok || (scheme != "nats" && scheme != "tls") || rest == "" {
			return fmt.Errorf("-nats-url %q: %q: want nats://host:port or tls://host:port", e.natsURL, u)
		}
		e.urls = append(e.urls, u)
	}
	if c.httpAddr != "" && c.brokerURL == "" {
		return fmt.Errorf("-engine nats with -http needs -broker-url: the cluster's MQTT listeners, comma-separated (tcp://a:1883,tcp://b:1883), for commands to gateways")
	}
	parts, err := strconv.Atoi(e.partitions)
	if err != nil || parts < 1 || parts > natsbus.MaxPartitions {
		return fmt.Errorf("-nats-partitions %q: want an integer from 1 to %d", e.partitions, natsbus.MaxPartitions)
	}
	reps, err := strconv.Atoi(e.replicas)
	if err != nil || reps < 1 || reps > 5 {
		return fmt.Errorf("-nats-replicas %q: want 1, 3 or 5 (at most the cluster's nodes)", e.replicas)
	}
	ack, err := time.ParseDuration(e.ackWait)
	if err != nil || ack <= 0 {
		return fmt.Errorf("-nats-ack-wait %q: want a positive duration such as 30s", e.ackWait)
	}
	if ack >= c.seqGrace {
		return fmt.Errorf("-nats-ack-wait %v must be below -seq-grace %v: a message not acknowledged by a stopped instance comes again after the ack wait, and must fill its gap before the gap counts as lost", ack, c.seqGrace)
	}
	ttl, err := time.ParseDuration(e.leaseTTL)
	if err != nil || ttl < time.Second {
		return fmt.Errorf("-nats-lease-ttl %q: want a duration of at least 1s such as 10s", e.leaseTTL)
	}
	e.nats = natsbus.Config{
		URLs: e.urls, Instance: instanceName(c.clientID), Stream: e.stream,
		Partitions: parts, Replicas: reps, AckWait: ack, LeaseTTL: ttl,
		Username: c.username, Password: c.password,
	}
	if _, err := natsbus.New(withFleet(e.nats)); err != nil { // the stream name and the rest
		return fmt.Errorf("-engine nats: %w", err)
	}
	return nil
}

func withFleet(c natsbus.Config) natsbus.Config {
	c.Fleet = fleet.New(time.Minute, nil)
	return c
}

// instanceName is the engine's name of this instance: the client id with
// every character a NATS key cannot hold replaced by '-'.
func instanceName(clientID string) string {
	b := []byte(clientID)
	for i, r := range b {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// bus returns the engine for the nats engine, nil for mqtt.
func (e *engineConfig) bus(c *config, f *fleet.Fleet, log *slog.Logger) (*natsbus.Bus, error) {
	if e.engine != "nats" {
		return nil, nil
	}
	cfg := e.nats
	cfg.Fleet = f
	cfg.Logger = log.With("component", "nats")
	cfg.Restore = web.RestoreParking(&web.Influx{URL: c.influxURL, DB: c.influxBucket, Token: c.influxToken}, f)
	var err error
	if cfg.TLS, err = c.tlsConfig(); err != nil {
		return nil, err
	}
	return natsbus.New(cfg)
}
