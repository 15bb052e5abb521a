package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/testenv"
)

// TestGatewayOverTLSToEmbeddedBroker: gatewayd reaches cloudd's embedded
// broker over TLS only (-broker-listen ""), logs in with its password,
// checks the broker's certificate against the site CA, and its readings
// land in InfluxDB: the real gateway's birth, retained status, Last Will
// and subscriptions pass the broker's ACL.
func TestGatewayOverTLSToEmbeddedBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	w := &world{t: t}
	w.influx, w.db = testenv.NewDatabase(t)
	certs := testenv.NewCerts(t)
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("gw-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "credentials.yaml")
	passFile := filepath.Join(dir, "mqtt.pass")
	if err := os.WriteFile(creds, []byte("gateways:\n  - {site: e2e, gateway: gw-1, password: '"+string(hash)+"'}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(passFile, []byte("gw-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsPort := testenv.FreePort(t)
	w.cloud = startProc(t, filepath.Join(binDir, "cloudd"),
		"-broker-listen", "", "-broker-tls-listen", fmt.Sprintf("127.0.0.1:%d", tlsPort),
		"-broker-tls-cert", certs.ServerCert, "-broker-tls-key", certs.ServerKey, "-credentials", creds,
		"-client-id", "cloudd-"+w.db, "-influx-url", w.influx.URL, "-influx-bucket", w.db, "-http", "")

	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 2, Buses: 1, Seed: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	lot.Pause()
	t.Cleanup(func() { lot.Close() })
	w.lot = lot
	statusPort := testenv.FreePort(t)
	var b strings.Builder
	fmt.Fprintf(&b, "site: e2e\ngateway: gw-1\nuplink:\n  brokers: [ssl://localhost:%d]\n  reconnect_max: 1s\n", tlsPort)
	fmt.Fprintf(&b, "  username: e2e/gw-1\n  password_file: %s\n  tls: {ca: %s}\n", passFile, certs.CAFile)
	fmt.Fprintf(&b, "outbox:\n  path: %s\nstatus:\n  listen: 127.0.0.1:%d\n", filepath.Join(dir, "outbox"), statusPort)
	b.WriteString("buses:\n")
	for _, bus := range lot.Buses() {
		fmt.Fprintf(&b, "  - {name: %s, port: %s, baud: 19200, parity: even, stop_bits: 1, timeout: 200ms}\n", bus.Name, bus.Path)
	}
	b.WriteString("devices:\n")
	for _, bay := range lot.Bays() {
		fmt.Fprintf(&b, "  - {id: bay-%03d, driver: modbus, bus: rs485-%d, unit: %d, profile: %s, poll: 200ms, tags: {lot: l1, bay: \"%03d\"}}\n",
			bay.Bay, bay.Bus+1, bay.Unit, bay.Model.Profile(), bay.Bay)
	}
	w.gwCfg = filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(w.gwCfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	w.gw = startProc(t, filepath.Join(binDir, "gatewayd"), "-config", w.gwCfg)
	w.waitInitial()
	if out := w.cloud.output(); strings.Contains(out, "denied") || strings.Contains(out, "refused connect") {
		t.Errorf("the broker refused something of the real gateway:\n%s", out)
	}
}
