package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/cloud/provision"
	"github.com/luling-edge/luling/cloud/registry"
	"github.com/luling-edge/luling/internal/testenv"
)

// cli runs a cloudd subcommand and returns its stdout, stderr and error.
func cli(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func TestGatewayCommand(t *testing.T) {
	dir := t.TempDir()
	reg, ca := filepath.Join(dir, "gateways.json"), filepath.Join(dir, "ca")
	t.Setenv("LULING_CLOUD_REGISTRY", reg)
	t.Setenv("LULING_CLOUD_CA_DIR", ca)
	if _, _, err := cli(t, "pw-1\n", "gateway", "add", "harbor", "gw-01", "-password-stdin"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, "", "gateway", "add", "harbor", "gw-01"); !errors.Is(err, registry.ErrExists) {
		t.Errorf("second add: %v", err)
	}
	bundle := filepath.Join(dir, "b.tar.gz")
	if _, stderr, err := cli(t, "", "gateway", "provision", "harbor", "gw-02", "-broker", "ssl://cloud:8883", "-out", bundle); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(stderr, "provisioned: certificate ") {
		t.Errorf("provision said %q", stderr)
	}
	fi, err := os.Stat(bundle)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("bundle file: %v %v", fi, err)
	}
	fh, _ := os.Open(bundle)
	b, err := provision.Read(bundle, fh)
	fh.Close()
	if err != nil || b.Site != "harbor" || b.Gateway != "gw-02" {
		t.Fatalf("bundle: %+v %v", b.Meta, err)
	}
	if _, _, err := cli(t, "", "gateway", "disable", "harbor", "gw-01"); err != nil {
		t.Fatal(err)
	}
	out, _, err := cli(t, "", "gateway", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "harbor/gw-01  false    true") || !strings.Contains(out, "harbor/gw-02  true     false     "+b.Serial+": valid until") {
		t.Errorf("list:\n%s", out)
	}
	if _, _, err := cli(t, "", "gateway", "revoke", "harbor", "gw-02", strings.ToUpper(b.Serial)); err != nil {
		t.Fatal(err)
	}
	if out, _, _ := cli(t, "", "gateway", "list"); !strings.Contains(out, b.Serial+": revoked") {
		t.Errorf("after revoke:\n%s", out)
	}
	if _, _, err := cli(t, "", "gateway", "passwd", "harbor", "gw-02", "-clear"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, "", "gateway", "remove", "harbor", "gw-01"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli(t, "", "gateway", "remove", "harbor", "gw-01"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("remove twice: %v", err)
	}
	cert, key := filepath.Join(dir, "srv.pem"), filepath.Join(dir, "srv-key.pem")
	if _, _, err := cli(t, "", "ca", "server-cert", "-host", "127.0.0.1,cloud", "-cert", cert, "-key", key); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		t.Errorf("server certificate: %v", err)
	}
	for _, args := range [][]string{
		{"gateway"},
		{"gateway", "frobnicate"},
		{"gateway", "add", "harbor"},
		{"gateway", "add", "Harbor", "gw"},
		{"gateway", "passwd", "harbor", "gw-02"}, // empty stdin
		{"gateway", "provision", "harbor", "gw-03", "-out", bundle},
		{"gateway", "provision", "harbor", "gw-03", "-broker", "ssl://x:1", "-out", filepath.Join(dir, "missing", "b.tgz")},
		{"ca", "server-cert", "-host", "x"},
	} {
		var ue *usageError
		if _, _, err := cli(t, "", args...); !errors.As(err, &ue) && !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
	}
	if _, err := (&registry.File{Path: reg}).Get("harbor", "gw-03"); !errors.Is(err, registry.ErrNotFound) {
		t.Error("a provision that could not write its bundle registered the gateway")
	}
}

func TestIdentityFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-broker-tls-client-auth", "maybe"}, `-broker-tls-client-auth "maybe": want none, verify-if-given or require`},
		{[]string{"-broker-tls-client-auth", "require"}, "-broker-tls-client-auth require needs -ca-dir"},
		{[]string{"-ca-dir", "ca", "-registry", "r.json"}, "-ca-dir (client certificates, -broker-tls-client-auth verify-if-given) needs -broker-tls-listen"},
		{[]string{"-ca-dir", "ca", "-broker-tls-listen", ":8883", "-broker-tls-cert", "c", "-broker-tls-key", "k"}, "-ca-dir needs -registry"},
	} {
		err := run(context.Background(), c.args, nil, io.Discard, io.Discard)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(ue.msg, c.want) {
			t.Errorf("%v: %v, want a usage error containing %q", c.args, err, c.want)
		}
	}
}

// TestRegistryAPIWithMTLS: with -registry, -ca-dir and a TLS listener that
// requires client certificates, a gateway cloudd has never seen is
// provisioned through the API, logs in with the bundle's certificate alone
// and its telemetry reaches InfluxDB; disabling it through the CLI (another
// process's file change) disconnects it, and revoking its certificate
// through the API refuses it: all without restarting cloudd.
func TestRegistryAPIWithMTLS(t *testing.T) {
	dir := t.TempDir()
	reg, caDir := filepath.Join(dir, "gateways.json"), filepath.Join(dir, "ca")
	tokens := filepath.Join(dir, "tokens.json")
	op, viewer := newToken(t, tokens, "ops", "operator"), newToken(t, tokens, "watch", "viewer")
	srvCert, srvKey := filepath.Join(dir, "srv.pem"), filepath.Join(dir, "srv-key.pem")
	if _, _, err := cli(t, "", "ca", "server-cert", "-ca-dir", caDir, "-host", "127.0.0.1", "-cert", srvCert, "-key", srvKey); err != nil {
		t.Fatal(err)
	}
	tlsAddr := "127.0.0.1:" + itoa(testenv.FreePort(t))
	api, logs, influx, db := startCloudDB(t, "-tokens", tokens, "-registry", reg, "-ca-dir", caDir, "-broker-tls-listen", tlsAddr,
		"-broker-tls-cert", srvCert, "-broker-tls-key", srvKey, "-broker-tls-client-auth", "require")
	gws := api + "/api/v1/registry/gateways"

	if code, _ := call(t, "POST", gws+"/lot-7/gw-1/bundle", viewer, `{"brokers":["ssl://`+tlsAddr+`"]}`); code != 403 {
		t.Errorf("viewer asked for a bundle: %d", code)
	}
	req, _ := http.NewRequest("POST", gws+"/lot-7/gw-1/bundle", strings.NewReader(`{"brokers":["ssl://`+tlsAddr+`"],"validity":"24h"}`))
	req.Header.Set("Authorization", "Bearer "+op)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/gzip" {
		t.Fatalf("bundle: %d %s", resp.StatusCode, raw)
	}
	b, err := provision.Read("api", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("X-Luling-Certificate-Serial"); got != b.Serial {
		t.Errorf("serial header %q, bundle %q", got, b.Serial)
	}
	code, body := call(t, "GET", gws+"/lot-7/gw-1", viewer, "")
	var v gatewayView
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil || !v.Enabled || len(v.Certs) != 1 || v.HasPassword {
		t.Fatalf("registry entry: %d %s", code, body)
	}

	pair, err := tls.X509KeyPair(b.CertPEM, b.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b.CAPEM)
	tc := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}
	lost := make(chan struct{}, 1)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + tlsAddr).SetClientID("lot-7-gw-1").SetTLSConfig(tc).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second).
		SetConnectionLostHandler(func(mqtt.Client, error) { lost <- struct{}{} }))
	if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("gateway with the bundle's certificate: %v", tok.Error())
	}
	defer c.Disconnect(100)
	point := `{"v":1,"site":"lot-7","gateway":"gw-1","seq":1,"kind":"telemetry","records":[{"m":"pv","t":"` +
		time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano) + `","tags":{"device":"inv-1"},"fields":{"ac_power_w":7.5}}]}`
	defer func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	}()
	wait(t, "point from the provisioned gateway", func() bool {
		c.Publish("gw/v1/lot-7/gw-1/telemetry", 1, false, point).WaitTimeout(5 * time.Second)
		s, err := influx.Query(db, "SELECT * FROM pv WHERE gateway = 'gw-1'")
		return err == nil && len(s) == 1 && len(s[0].Values) == 1
	})

	// The CLI is another process: it changes the file, cloudd notices.
	// SIGHUP reloads the registry; it does not stop cloudd (or this test).
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait(t, "SIGHUP reload logged", func() bool { return strings.Contains(logs.String(), "SIGHUP: gateway registry reloaded") })
	if _, _, err := cli(t, "", "gateway", "disable", "-registry", reg, "lot-7", "gw-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(30 * time.Second):
		t.Fatal("disabled gateway still connected")
	}
	if code, body := call(t, "POST", gws+"/lot-7/gw-1/enable", op, ""); code != 200 {
		t.Fatalf("enable: %d %s", code, body)
	}
	c2 := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + tlsAddr).SetClientID("lot-7-gw-1").SetTLSConfig(tc).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second))
	if tok := c2.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("re-enabled gateway: %v", tok.Error())
	}
	defer c2.Disconnect(100)
	if code, body := call(t, "DELETE", gws+"/lot-7/gw-1/certificates/"+b.Serial, op, ""); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	wait(t, "revoked certificate's session closed", func() bool { return !c2.IsConnectionOpen() })
	c3 := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + tlsAddr).SetClientID("lot-7-gw-1b").SetTLSConfig(tc).
		SetAutoReconnect(false).SetConnectTimeout(10 * time.Second))
	if tok := c3.Connect(); tok.WaitTimeout(20*time.Second) && tok.Error() == nil {
		c3.Disconnect(0)
		t.Error("revoked certificate logged in")
	}
	for _, cse := range []struct {
		method, url, body string
		want              int
	}{
		{"POST", gws, `{"site":"lot-7","id":"gw-1"}`, 409},
		{"POST", gws, `{"site":"lot-7","id":"gw-2","password":"pw"}`, 201},
		{"POST", gws, `{"site":"LOT","id":"gw-2"}`, 400},
		{"POST", gws, `{"site":"lot-7","id":"gw-3","colour":1}`, 400},
		{"GET", gws + "/lot-7/nope", "", 404},
		{"DELETE", gws + "/lot-7/gw-1/certificates/abc", "", 404},
		{"PUT", gws + "/lot-7/gw-2/password", `{"password":""}`, 200},
		{"POST", gws + "/lot-7/gw-2/bundle", `{"brokers":["tcp://x:1883"]}`, 400},
		{"DELETE", gws + "/lot-7/gw-2", "", 204},
	} {
		if code, body := call(t, cse.method, cse.url, op, cse.body); code != cse.want {
			t.Errorf("%s %s %s: %d %s, want %d", cse.method, cse.url, cse.body, code, body, cse.want)
		}
	}
	if code, body := call(t, "GET", gws, viewer, ""); code != 200 || strings.Contains(body, "$2a$") || !strings.Contains(body, `"id":"gw-1"`) {
		t.Errorf("list: %d %s", code, body)
	}
}
