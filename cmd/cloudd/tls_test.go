package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/internal/testenv"
)

// TestRunTLSBroker runs cloudd against a Mosquitto that requires TLS with a
// client certificate, configured only through the -tls-* flags.
func TestRunTLSBroker(t *testing.T) {
	b := testenv.MosquittoTLS(t)
	influx, db := testenv.NewDatabase(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs syncBuf
	go func() {
		done <- run(ctx, []string{"-broker-url", b.URL(), "-tls-ca", b.CAFile, "-tls-cert", b.CertFile, "-tls-key", b.KeyFile,
			"-influx-url", influx.URL, "-influx-bucket", db, "-http", "", "-client-id", "cloudd-tls"}, nil, io.Discard, &logs)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	pem, err := os.ReadFile(b.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(b.CertFile, b.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("gw-tls").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: b.ServerName}))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("gateway connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	body := `{"v":1,"site":"s1","gateway":"gw-1","seq":1,"kind":"telemetry","records":[{"m":"pv","t":"` +
		time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano) + `","tags":{"device":"inv-1"},"fields":{"ac_power_w":12.5}}]}`
	// cloudd may not have subscribed yet: publish until the point lands.
	wait(t, "point written over TLS", func() bool {
		c.Publish("gw/v1/s1/gw-1/telemetry", 1, false, body).WaitTimeout(5 * time.Second)
		s, err := influx.Query(db, "SELECT * FROM pv")
		return err == nil && len(s) == 1 && len(s[0].Values) == 1
	})
}
