// Package provision makes the one file a new gateway needs to start
// sending: a provisioning bundle. Issue records the gateway in the
// registry (when asked to add it), issues it a client certificate from
// the site CA and records the serial; the Bundle is then written as a
// gzip-compressed tar file, laid out as /etc/luling expects:
//
//	bundle.json        {"version": 1, "site", "gateway", "brokers", "serial", "not_after"}
//	gateway.yaml       the gateway's configuration (see Config)
//	tls/ca.pem         the site CA: the broker's server certificate chains to it
//	tls/gateway.pem    the gateway's client certificate, CN "{site}/{gateway}"
//	tls/gateway-key.pem  its private key (mode 0600 in the archive)
//
// gateway.yaml names the TLS files relative to itself, so the bundle works
// wherever it is unpacked. The package's first-boot step
// (luling-firstboot) unpacks it into /etc/luling.
package provision

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/luling-edge/luling/cloud/pki"
	"github.com/luling-edge/luling/cloud/registry"
)

// Names inside a bundle.
const (
	MetaFile   = "bundle.json"
	ConfigFile = "gateway.yaml"
	CAFile     = "tls/ca.pem"
	CertFile   = "tls/gateway.pem"
	KeyFile    = "tls/gateway-key.pem"
)

// MaxBundleBytes bounds what Read accepts (uncompressed, all files).
const MaxBundleBytes = 1 << 20

// Meta is bundle.json.
type Meta struct {
	Version  int       `json:"version"`
	Site     string    `json:"site"`
	Gateway  string    `json:"gateway"`
	Brokers  []string  `json:"brokers"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
}

// Bundle is everything a new gateway needs.
type Bundle struct {
	Meta
	Config  []byte
	CAPEM   []byte
	CertPEM []byte
	KeyPEM  []byte
}

// Request asks for a bundle.
type Request struct {
	Site, Gateway string
	// Brokers are the URLs the gateway connects to (ssl:// for mTLS).
	Brokers []string
	// Validity of the client certificate; a year when 0.
	Validity time.Duration
	// Template is a gateway.yaml to start from (buses, devices, outbox);
	// a minimal one when nil. See Config.
	Template []byte
	// Add registers the gateway when the registry does not hold it yet;
	// without it an unknown gateway is an error (registry.ErrNotFound).
	Add bool
}

// Issue registers (with Add), issues and records a certificate, and
// returns the gateway's bundle. Provisioning a gateway again rotates its
// certificate: the earlier ones stay valid until revoked.
func Issue(reg *registry.File, ca *pki.CA, r Request) (Bundle, error) {
	if err := registry.CheckID(r.Site, r.Gateway); err != nil {
		return Bundle{}, fmt.Errorf("provision: %w", err)
	}
	if err := checkBrokers(r.Brokers); err != nil {
		return Bundle{}, err
	}
	cfg, err := Config(r.Template, r.Site, r.Gateway, r.Brokers)
	if err != nil {
		return Bundle{}, err
	}
	if _, err := reg.Get(r.Site, r.Gateway); errors.Is(err, registry.ErrNotFound) && r.Add {
		if _, err := reg.Add(r.Site, r.Gateway); err != nil && !errors.Is(err, registry.ErrExists) {
			return Bundle{}, err
		}
	} else if err != nil {
		return Bundle{}, fmt.Errorf("provision: %w (add it first, or ask to add it)", err)
	}
	validity := r.Validity
	if validity <= 0 {
		validity = 365 * 24 * time.Hour
	}
	is, err := ca.IssueClient(r.Site, r.Gateway, validity)
	if err != nil {
		return Bundle{}, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	if err := reg.AddCert(r.Site, r.Gateway, registry.Cert{Serial: is.Serial, Issued: now, NotAfter: is.NotAfter}); err != nil {
		return Bundle{}, err
	}
	return Bundle{
		Meta:   Meta{Version: 1, Site: r.Site, Gateway: r.Gateway, Brokers: r.Brokers, Serial: is.Serial, NotAfter: is.NotAfter},
		Config: cfg, CAPEM: ca.CertPEM, CertPEM: is.CertPEM, KeyPEM: is.KeyPEM,
	}, nil
}

func checkBrokers(brokers []string) error {
	if len(brokers) == 0 {
		return errors.New("provision: no broker URL: want at least one ssl://host:8883")
	}
	for _, b := range brokers {
		u, err := url.Parse(b)
		if err != nil || u.Host == "" {
			return fmt.Errorf("provision: broker %q: want scheme://host:port, e.g. ssl://cloud.example.org:8883", b)
		}
		switch strings.ToLower(u.Scheme) {
		case "ssl", "tls", "mqtts", "wss":
		default:
			return fmt.Errorf("provision: broker %q: a client certificate needs TLS: use ssl://, tls://, mqtts:// or wss://", b)
		}
	}
	return nil
}

// minimal is the configuration of a gateway without devices yet: it
// connects, reports its status and waits for the installer to add buses
// and devices (gatewayctl scan).
const minimal = `# Written by cloudd gateway provision. Add buses and devices
# (gatewayctl scan), then: gatewayctl validate /etc/luling/gateway.yaml
outbox:
  path: /var/lib/luling/outbox
status:
  listen: 127.0.0.1:9100
`

// Config returns template (or a minimal configuration) with site,
// gateway and uplink set for this gateway: the brokers, and TLS with the
// bundle's CA, certificate and key (relative paths, resolved against the
// config file's folder). The template's own uplink settings other than
// brokers, tls, username, password and password_file are kept; its
// comments are kept where they are not on replaced keys.
func Config(template []byte, site, gw string, brokers []string) ([]byte, error) {
	if len(template) == 0 {
		template = []byte(minimal)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(template, &doc); err != nil {
		return nil, fmt.Errorf("provision: config template: %w", err)
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	if doc.Kind != yaml.DocumentNode || root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("provision: config template: line %d: want a mapping (a gateway.yaml)", root.Line)
	}
	set(root, "site", scalar(site))
	set(root, "gateway", scalar(gw))
	up := get(root, "uplink")
	if up == nil || up.Kind != yaml.MappingNode {
		up = &yaml.Node{Kind: yaml.MappingNode}
		set(root, "uplink", up)
	}
	for _, k := range []string{"username", "password", "password_file"} {
		del(up, k)
	}
	list := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, b := range brokers {
		list.Content = append(list.Content, scalar(b))
	}
	set(up, "brokers", list)
	set(up, "tls", &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		scalar("ca"), scalar(CAFile), scalar("cert"), scalar(CertFile), scalar("key"), scalar(KeyFile),
	}})
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("provision: config: %w", err)
	}
	return out.Bytes(), nil
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func get(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func set(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, scalar(key), v)
}

func del(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i:i], m.Content[i+2:]...)
			return
		}
	}
}

// Write writes the bundle as a tar.gz.
func (b Bundle) Write(w io.Writer) error {
	meta, err := json.MarshalIndent(b.Meta, "", "  ")
	if err != nil {
		return err
	}
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	mtime := time.Now().UTC().Truncate(time.Second)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tls/", Mode: 0o750, ModTime: mtime}); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{
		{MetaFile, 0o644, append(meta, '\n')},
		{ConfigFile, 0o640, b.Config},
		{CAFile, 0o644, b.CAPEM},
		{CertFile, 0o644, b.CertPEM},
		{KeyFile, 0o600, b.KeyPEM},
	} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.body)), ModTime: mtime}); err != nil {
			return fmt.Errorf("provision: bundle: %w", err)
		}
		if _, err := tw.Write(f.body); err != nil {
			return fmt.Errorf("provision: bundle: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("provision: bundle: %w", err)
	}
	return gz.Close()
}

// Read reads a bundle written by Write; name is used in errors.
func Read(name string, r io.Reader) (Bundle, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return Bundle{}, fmt.Errorf("provision: bundle %s: want a tar.gz from cloudd gateway provision: %w", name, err)
	}
	tr := tar.NewReader(io.LimitReader(gz, MaxBundleBytes))
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Bundle{}, fmt.Errorf("provision: bundle %s: %w", name, err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		switch h.Name {
		case MetaFile, ConfigFile, CAFile, CertFile, KeyFile:
		default:
			return Bundle{}, fmt.Errorf("provision: bundle %s: unexpected entry %q", name, h.Name)
		}
		if h.Typeflag != tar.TypeReg {
			return Bundle{}, fmt.Errorf("provision: bundle %s: %s: want a regular file", name, h.Name)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return Bundle{}, fmt.Errorf("provision: bundle %s: %s: %w", name, h.Name, err)
		}
		files[h.Name] = body
	}
	for _, f := range []string{MetaFile, ConfigFile, CAFile, CertFile, KeyFile} {
		if _, ok := files[f]; !ok {
			return Bundle{}, fmt.Errorf("provision: bundle %s: %s missing", name, f)
		}
	}
	var b Bundle
	dec := json.NewDecoder(bytes.NewReader(files[MetaFile]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b.Meta); err != nil {
		return Bundle{}, fmt.Errorf("provision: bundle %s: %s: %w", name, MetaFile, err)
	}
	if b.Version != 1 {
		return Bundle{}, fmt.Errorf("provision: bundle %s: version %d: want 1", name, b.Version)
	}
	if err := registry.CheckID(b.Site, b.Gateway); err != nil {
		return Bundle{}, fmt.Errorf("provision: bundle %s: %w", name, err)
	}
	b.Config, b.CAPEM, b.CertPEM, b.KeyPEM = files[ConfigFile], files[CAFile], files[CertFile], files[KeyFile]
	return b, nil
}
