package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/luling-edge/luling/cloud/provision"
	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/testenv"
)

// cloudCLI runs a cloudd subcommand against the registry and CA of a
// running cloudd, as an operator would on its machine.
func cloudCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "cloudd"), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cloudd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestCommissionWithMTLS is issue #14's path, without restarting cloudd:
// cloudd runs its embedded broker with a TLS listener that requires
// client certificates from its site CA; a gateway it has never seen is
// provisioned through the registry into one bundle; the package's
// first-boot script installs the bundle; gatewayd starts from it and its
// readings reach InfluxDB. A second gateway's certificate cannot publish
// under the first one's topics, and revoking the first certificate
// disconnects gatewayd and keeps it out.
func TestCommissionWithMTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t}
	w.influx, w.db = testenv.NewDatabase(t)
	dir := t.TempDir()
	env := []string{"LULING_CLOUD_REGISTRY=" + filepath.Join(dir, "cloud", "gateways.json"), "LULING_CLOUD_CA_DIR=" + filepath.Join(dir, "cloud", "ca")}
	if err := os.MkdirAll(filepath.Join(dir, "cloud"), 0o700); err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey := filepath.Join(dir, "cloud", "broker.pem"), filepath.Join(dir, "cloud", "broker-key.pem")
	cloudCLI(t, env, "ca", "server-cert", "-host", "localhost,127.0.0.1", "-cert", srvCert, "-key", srvKey)
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	w.cloud = startProc(t, filepath.Join(binDir, "cloudd"),
		"-broker-listen", "", "-broker-tls-listen", tlsAddr, "-broker-tls-cert", srvCert, "-broker-tls-key", srvKey,
		"-broker-tls-client-auth", "require", "-registry", strings.TrimPrefix(env[0], "LULING_CLOUD_REGISTRY="),
		"-ca-dir", strings.TrimPrefix(env[1], "LULING_CLOUD_CA_DIR="),
		"-client-id", "cloudd-"+w.db, "-influx-url", w.influx.URL, "-influx-bucket", w.db, "-http", "")
	cloudPID := w.cloud.pid()

	// The site template: what the installer found on the buses.
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 2, Buses: 1, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	lot.Pause()
	t.Cleanup(func() { lot.Close() })
	w.lot = lot
	gwRoot := filepath.Join(dir, "gw")
	var b strings.Builder
	fmt.Fprintf(&b, "site: change-me\ngateway: gw-00\nuplink:\n  brokers: [tcp://broker.example.net:1883]\n  reconnect_max: 1s\n")
	fmt.Fprintf(&b, "outbox:\n  path: %s\nstatus:\n  listen: 127.0.0.1:%d\n", filepath.Join(gwRoot, "var/lib/luling/outbox"), testenv.FreePort(t))
	b.WriteString("buses:\n")
	for _, bus := range lot.Buses() {
		fmt.Fprintf(&b, "  - {name: %s, port: %s, baud: 19200, parity: even, stop_bits: 1, timeout: 200ms}\n", bus.Name, bus.Path)
	}
	b.WriteString("devices:\n")
	for _, bay := range lot.Bays() {
		fmt.Fprintf(&b, "  - {id: bay-%03d, driver: modbus, bus: rs485-%d, unit: %d, profile: %s, poll: 200ms, tags: {lot: l1, bay: \"%03d\"}}\n",
			bay.Bay, bay.Bus+1, bay.Unit, bay.Model.Profile(), bay.Bay)
	}
	tmpl := filepath.Join(dir, "site.yaml")
	if err := os.WriteFile(tmpl, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// Provision through the registry, while cloudd runs.
	if err := os.MkdirAll(filepath.Join(gwRoot, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(gwRoot, "boot", "luling-bundle-gw-1.tar.gz")
	cloudCLI(t, env, "gateway", "provision", "e2e", "gw-1", "-broker", "ssl://localhost:"+strings.Split(tlsAddr, ":")[1], "-template", tmpl, "-out", bundle)
	first := readBundle(t, bundle)

	// First boot: the package's script finds the bundle under /boot.
	fb := exec.Command(filepath.Join(root, "firmware-config", "packaging", "luling-firstboot"))
	fb.Env = append(os.Environ(), "LULING_ROOT="+gwRoot)
	if out, err := fb.CombinedOutput(); err != nil || !strings.Contains(string(out), "installed "+bundle+": e2e/gw-1") {
		t.Fatalf("luling-firstboot: %v\n%s", err, out)
	}
	if fi, err := os.Stat(filepath.Join(gwRoot, "etc/luling/tls/gateway-key.pem")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("installed key: %v %v, want mode 0640", fi, err)
	}
	w.gwCfg = filepath.Join(gwRoot, "etc/luling/gateway.yaml")
	w.gw = startProc(t, filepath.Join(binDir, "gatewayd"), "-config", w.gwCfg)
	w.waitInitial()
	if out := w.cloud.output(); strings.Contains(out, "denied") || strings.Contains(out, "refused") {
		t.Errorf("the broker refused something of the provisioned gateway:\n%s", out)
	}

	// A second gateway's certificate cannot publish under the first's topics.
	second := filepath.Join(dir, "gw-2.tar.gz")
	cloudCLI(t, env, "gateway", "provision", "e2e", "gw-2", "-broker", "ssl://localhost:"+strings.Split(tlsAddr, ":")[1], "-out", second)
	b2 := readBundle(t, second)
	intruder := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("ssl://" + tlsAddr).SetClientID("e2e-gw-2").
		SetTLSConfig(bundleTLS(t, b2)).SetAutoReconnect(false).SetConnectTimeout(10 * time.Second))
	if tok := intruder.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("second gateway with its own certificate: %v", tok.Error())
	}
	forged := `{"v":1,"site":"e2e","gateway":"gw-1","seq":999999,"kind":"telemetry","records":[{"m":"parking_bay","t":"` +
		time.Now().UTC().Format(time.RFC3339Nano) + `","tags":{"device":"forged","lot":"l1","zone":"z","bay":"999"},"fields":{"occupied":true}}]}`
	intruder.Publish("gw/v1/e2e/gw-1/telemetry", 1, false, forged).WaitTimeout(10 * time.Second)
	testenv.WaitFor(t, 10*time.Second, "broker disconnects the second gateway", func() bool { return !intruder.IsConnectionOpen() })
	// The log line may reach the output after the disconnect.
	testenv.WaitFor(t, 10*time.Second, "a denial logged for gw-2 publishing under gw-1's topic", func() bool {
		return logged(w.cloud.output(), `msg="broker: denied"`, "username=e2e/gw-2", "topic=gw/v1/e2e/gw-1/telemetry")
	})

	// Revoking the first certificate disconnects gatewayd and keeps it out.
	cloudCLI(t, env, "gateway", "revoke", "e2e", "gw-1", first.Serial)
	testenv.WaitFor(t, 15*time.Second, "gatewayd disconnected", func() bool {
		return logged(w.cloud.output(), "disconnecting a gateway the registry no longer admits", "username=e2e/gw-1")
	})
	testenv.WaitFor(t, 15*time.Second, "gatewayd's reconnect refused", func() bool {
		return logged(w.cloud.output(), "refused TLS handshake: certificate not admitted", "gateway=e2e/gw-1", "serial="+first.Serial)
	})
	if w.cloud.pid() != cloudPID {
		t.Error("cloudd was restarted")
	}
	s, err := w.influx.Query(w.db, "SELECT * FROM parking_bay WHERE device = 'forged'")
	if err != nil || len(s) != 0 {
		t.Errorf("the forged reading reached InfluxDB: %v %v", s, err)
	}
}

// logged reports whether one line of log has every part.
func logged(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func readBundle(t *testing.T, path string) provision.Bundle {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := provision.Read(path, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func bundleTLS(t *testing.T, b provision.Bundle) *tls.Config {
	t.Helper()
	pair, err := tls.X509KeyPair(b.CertPEM, b.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(b.CAPEM)
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "localhost"}
}
