package natsbus

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// The sample server configuration loads, and has what the engine and the
// gateways need: a server name, JetStream, a cluster, the MQTT listener
// with replicated MQTT streams.
func TestSampleConfigLoads(t *testing.T) {
	o, err := server.ProcessConfigFile("nats-server.conf")
	if err != nil {
		t.Fatal(err)
	}
	if o.ServerName == "" || !o.JetStream || o.Cluster.Name == "" || len(o.Routes) != 3 || o.MQTT.Port != 1883 || o.MQTT.StreamReplicas != 3 {
		t.Fatalf("server %q jetstream %v cluster %q routes %d mqtt port %d replicas %d",
			o.ServerName, o.JetStream, o.Cluster.Name, len(o.Routes), o.MQTT.Port, o.MQTT.StreamReplicas)
	}
	if len(o.Users) != 2 {
		t.Fatalf("%d users, want cloudd and one gateway", len(o.Users))
	}
}
