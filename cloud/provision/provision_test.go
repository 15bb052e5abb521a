package provision

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/luling-edge/luling/cloud/pki"
	"github.com/luling-edge/luling/cloud/registry"
)

func setup(t *testing.T) (*registry.File, *pki.CA) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.Open(filepath.Join(dir, "ca"), "harbor")
	if err != nil {
		t.Fatal(err)
	}
	return &registry.File{Path: filepath.Join(dir, "gateways.json")}, ca
}

func TestIssueAndRoundTrip(t *testing.T) {
	reg, ca := setup(t)
	req := Request{Site: "harbor", Gateway: "gw-01", Brokers: []string{"ssl://cloud.example.org:8883"}}
	if _, err := Issue(reg, ca, req); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown gateway without Add: %v", err)
	}
	req.Add = true
	b, err := Issue(reg, ca, req)
	if err != nil {
		t.Fatal(err)
	}
	g, err := reg.Get("harbor", "gw-01")
	if err != nil || !g.Enabled || !g.ValidCert(b.Serial) {
		t.Fatalf("registry after provision: %+v, %v", g, err)
	}
	again, err := Issue(reg, ca, req) // rotation
	if err != nil || again.Serial == b.Serial {
		t.Fatalf("second provision: %v, serial %s", err, again.Serial)
	}
	if g, _ := reg.Get("harbor", "gw-01"); len(g.Certs) != 2 || !g.ValidCert(b.Serial) {
		t.Errorf("rotation must keep the first certificate valid: %+v", g.Certs)
	}

	var buf bytes.Buffer
	if err := b.Write(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := Read("b.tar.gz", &buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.Site != "harbor" || got.Gateway != "gw-01" || got.Serial != b.Serial || got.Brokers[0] != req.Brokers[0] {
		t.Errorf("meta %+v", got.Meta)
	}
	if _, err := tls.X509KeyPair(got.CertPEM, got.KeyPEM); err != nil {
		t.Errorf("certificate and key from the bundle: %v", err)
	}
	if !bytes.Equal(got.CAPEM, ca.CertPEM) || !bytes.Equal(got.Config, b.Config) {
		t.Error("CA or config changed in the round trip")
	}
	if _, err := Issue(reg, ca, Request{Site: "harbor", Gateway: "gw-02", Brokers: []string{"tcp://cloud:1883"}, Add: true}); err == nil || !strings.Contains(err.Error(), "needs TLS") {
		t.Errorf("plain broker URL: %v", err)
	}
	if _, err := reg.Get("harbor", "gw-02"); !errors.Is(err, registry.ErrNotFound) {
		t.Error("a refused provision registered the gateway")
	}
}

func TestConfigFromTemplate(t *testing.T) {
	tmpl := []byte(`# site config
site: change-me
gateway: gw-99
uplink:
  brokers: [tcp://broker.example.net:1883]
  username: change-me/gw-99
  password_file: /etc/luling/mqtt.pass
  qos: 1
devices:
  - id: bay-1 # first bay
    driver: modbus
`)
	out, err := Config(tmpl, "harbor", "gw-01", []string{"ssl://a:8883", "ssl://b:8883"})
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Site, Gateway string
		Uplink        map[string]any
		Devices       []map[string]any
	}
	if err := yaml.Unmarshal(out, &c); err != nil {
		t.Fatal(err)
	}
	if c.Site != "harbor" || c.Gateway != "gw-01" || len(c.Devices) != 1 {
		t.Errorf("config:\n%s", out)
	}
	tlsm, _ := c.Uplink["tls"].(map[string]any)
	if tlsm["cert"] != CertFile || tlsm["key"] != KeyFile || tlsm["ca"] != CAFile || c.Uplink["qos"] != 1 {
		t.Errorf("uplink: %v", c.Uplink)
	}
	for _, k := range []string{"username", "password_file"} {
		if _, ok := c.Uplink[k]; ok {
			t.Errorf("uplink.%s kept: the certificate is the identity", k)
		}
	}
	if !strings.Contains(string(out), "# first bay") {
		t.Errorf("template comments lost:\n%s", out)
	}
	if _, err := Config([]byte("- a list"), "s", "g", nil); err == nil || !strings.Contains(err.Error(), "want a mapping") {
		t.Errorf("list template: %v", err)
	}
	if out, err := Config(nil, "s", "g", []string{"ssl://x:1"}); err != nil || !strings.Contains(string(out), "outbox:") {
		t.Errorf("minimal config: %v\n%s", err, out)
	}
}

func tarGz(t testing.TB, files map[string]string) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for n, body := range files {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o600, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestReadErrors(t *testing.T) {
	full := map[string]string{MetaFile: `{"version":1,"site":"s","gateway":"g"}`, ConfigFile: "", CAFile: "", CertFile: "", KeyFile: ""}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range full {
			m[a] = b
		}
		if v == "-" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		body []byte
		want string
	}{
		{[]byte("not gzip"), "want a tar.gz"},
		{tarGz(t, with("../etc/passwd", "x")), `unexpected entry "../etc/passwd"`},
		{tarGz(t, with(KeyFile, "-")), "tls/gateway-key.pem missing"},
		{tarGz(t, with(MetaFile, `{"version":2,"site":"s","gateway":"g"}`)), "version 2"},
		{tarGz(t, with(MetaFile, `{"version":1,"site":"S","gateway":"g"}`)), "[a-z0-9-]"},
	} {
		_, err := Read("b.tgz", bytes.NewReader(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "b.tgz") {
			t.Errorf("err = %v, want it to name the file and contain %q", err, c.want)
		}
	}
	if _, err := Read("ok", bytes.NewReader(tarGz(t, full))); err != nil {
		t.Errorf("complete bundle: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(tarGz(f, map[string]string{MetaFile: `{"version":1,"site":"s","gateway":"g"}`, ConfigFile: "a: 1", CAFile: "", CertFile: "", KeyFile: ""}))
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Read("fuzz", bytes.NewReader(b))
		if err == nil && registry.CheckID(got.Site, got.Gateway) != nil {
			t.Fatalf("accepted identity %q/%q", got.Site, got.Gateway)
		}
	})
}
