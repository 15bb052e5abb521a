package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/cloud/broker"
	"github.com/luling-edge/luling/internal/testenv"
)

func TestBrokerFlagDefaults(t *testing.T) {
	for _, name := range []string{"BROKER_LISTEN", "BROKER_TLS_LISTEN", "BROKER_TLS_CERT", "BROKER_TLS_KEY", "BROKER_URL"} {
		t.Setenv("LULING_CLOUD_"+name, "")
		os.Unsetenv("LULING_CLOUD_" + name)
	}
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.embedded.listen != "127.0.0.1:1883" || c.embedded.tlsListen != "" {
		t.Errorf("defaults: %+v, want plain MQTT on loopback only", c.embedded)
	}
	t.Setenv("LULING_CLOUD_BROKER_LISTEN", "")
	t.Setenv("LULING_CLOUD_BROKER_TLS_LISTEN", ":8883")
	t.Setenv("LULING_CLOUD_BROKER_TLS_CERT", "server.pem")
	t.Setenv("LULING_CLOUD_BROKER_TLS_KEY", "server.key")
	c, err = parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := embeddedConfig{listen: "", tlsListen: ":8883", tlsCert: "server.pem", tlsKey: "server.key", ident: c.embedded.ident}
	if c.embedded != want {
		t.Errorf("from the environment: %+v, want %+v", c.embedded, want)
	}
}

func TestBadBrokerFlagsExit2(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-broker-listen", "1883"}, "-broker-listen"},
		{[]string{"-broker-tls-listen", "8883", "-broker-tls-cert", "c", "-broker-tls-key", "k"}, "-broker-tls-listen"},
		{[]string{"-broker-listen", ""}, "no listener for gateways"},
		{[]string{"-broker-tls-listen", ":8883"}, "needs -broker-tls-cert and -broker-tls-key"},
		{[]string{"-broker-tls-listen", ":8883", "-broker-tls-cert", "c"}, "needs -broker-tls-cert and -broker-tls-key"},
		{[]string{"-broker-tls-cert", "c", "-broker-tls-key", "k"}, "need -broker-tls-listen"},
	} {
		err := run(context.Background(), c.args, strings.NewReader(""), io.Discard, io.Discard)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(ue.msg, c.want) {
			t.Errorf("%q: err = %v, want a usage error containing %q", c.args, err, c.want)
		}
	}
	// A certificate that cannot be loaded stops cloudd and names the files.
	err := run(context.Background(), []string{"-broker-tls-listen", "127.0.0.1:0", "-broker-tls-cert", "/nonexistent/c.pem", "-broker-tls-key", "/nonexistent/k.pem"},
		strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/c.pem") {
		t.Errorf("missing certificate: err = %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{"127.0.0.1": true, "::1": true, "localhost": true, "127.1.2.3": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.5": false, "example.com": false} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestRunEmbeddedTLSOnly runs cloudd with the embedded broker on TLS only:
// a gateway publishes over TLS and the point lands in InfluxDB; a plain
// MQTT connection to the TLS port is refused.
func TestRunEmbeddedTLSOnly(t *testing.T) {
	influx, db := testenv.NewDatabase(t)
	certs := testenv.NewCerts(t)
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	creds := filepath.Join(t.TempDir(), "creds.yaml")
	os.WriteFile(creds, []byte("gateways:\n  - {site: s1, gateway: gw-1, password: '"+string(h)+"'}\n"), 0o600)
	addr := "127.0.0.1:" + itoa(testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs syncBuf
	go func() {
		done <- run(ctx, []string{"-broker-listen", "", "-broker-tls-listen", addr, "-broker-tls-cert", certs.ServerCert, "-broker-tls-key", certs.ServerKey,
			"-credentials", creds, "-influx-url", influx.URL, "-influx-bucket", db, "-http", "", "-client-id", "cloudd-tls-only"},
			nil, io.Discard, &logs)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	wait(t, "broker listening", func() bool { return strings.Contains(logs.String(), "embedded broker listening") })
	if !strings.Contains(logs.String(), `plain="" tls=`+addr) {
		t.Errorf("log does not show TLS only on %s:\n%s", addr, logs.String())
	}
	opts := func(url, id string) *mqtt.ClientOptions {
		return mqtt.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername("s1/gw-1").SetPassword("pw").
			SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).SetTLSConfig(certs.ClientTLS(t))
	}
	plain := mqtt.NewClient(opts("tcp://"+addr, "gw-plain"))
	if tok := plain.Connect(); tok.WaitTimeout(20*time.Second) && tok.Error() == nil {
		plain.Disconnect(0)
		t.Error("plain MQTT connection to the TLS port accepted")
	}
	c := mqtt.NewClient(opts("ssl://"+addr, "gw-1"))
	if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("gateway connect over TLS: %v", tok.Error())
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

// TestBrokerCertificateReload: a renewed certificate is served from the
// next handshake on; while only half of the pair is renewed the previous
// certificate stays in service.
func TestBrokerCertificateReload(t *testing.T) {
	first, second := testenv.NewCerts(t), testenv.NewCerts(t)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	bump := time.Now()
	install := func(from, to string) {
		t.Helper()
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o600); err != nil {
			t.Fatal(err)
		}
		bump = bump.Add(time.Hour) // a new modification time even on a coarse file system clock
		if err := os.Chtimes(to, bump, bump); err != nil {
			t.Fatal(err)
		}
	}
	install(first.ServerCert, certPath)
	install(first.ServerKey, keyPath)
	var logs syncBuf
	cf := &certFiles{cert: certPath, key: keyPath, log: slog.New(slog.NewTextHandler(&logs, nil))}
	if _, err := cf.get(nil); err != nil {
		t.Fatal(err)
	}
	b, err := broker.Start(broker.Config{TLSListen: "127.0.0.1:0", TLS: &tls.Config{GetCertificate: cf.get}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	trusts := func(ca *testenv.Certs) bool {
		c, err := tls.Dial("tcp", b.TLSAddr(), ca.ClientTLS(t))
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	if !trusts(first) || trusts(second) {
		t.Fatal("the first certificate is not the one served")
	}
	install(second.ServerCert, certPath)
	if !trusts(first) {
		t.Error("half-renewed pair: the previous certificate is no longer served")
	}
	if !strings.Contains(logs.String(), "serving the previous one") {
		t.Errorf("half-renewed pair not logged:\n%s", logs.String())
	}
	install(second.ServerKey, keyPath)
	if !trusts(second) || trusts(first) {
		t.Error("the renewed certificate is not served")
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("reload not logged:\n%s", logs.String())
	}
}
