package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSBroker is a Mosquitto broker whose only listener speaks TLS and requires
// a client certificate signed by the test's own certificate authority.
type TLSBroker struct {
	*Broker
	// CAFile is the PEM certificate of the authority that signed both the
	// server's and the client's certificates.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key that the
	// broker accepts.
	CertFile, KeyFile string
	// ServerName is a name in the server certificate (it also holds the
	// address 127.0.0.1).
	ServerName string
}

// URL returns ssl://127.0.0.1:port.
func (b *TLSBroker) URL() string { return fmt.Sprintf("ssl://127.0.0.1:%d", b.Port) }

// Certs are throwaway PEM files made by NewCerts: a certificate authority,
// a server certificate for localhost and 127.0.0.1, and a client
// certificate, all signed by that authority.
type Certs struct {
	Dir                   string // the folder holding them (world-readable)
	CAFile                string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	ServerName            string // a name in the server certificate
}

// NewCerts generates a certificate authority, a server certificate (for
// localhost and 127.0.0.1) and a client certificate with crypto/x509 into a
// temporary folder that is removed when the test ends.
func NewCerts(t testing.TB) *Certs {
	t.Helper()
	// A broker started as root drops to the mosquitto user before it reads
	// the certificates, so the folder and files must be readable by others
	// (t.TempDir is private to the test's user).
	dir, err := os.MkdirTemp("", "luling-certs-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ca, caKey, err := newCert(dir, "ca", &x509.Certificate{
		Subject:               pkix.Name{CommonName: "luling test ca"},
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
	}, nil, nil)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if _, _, err := newCert(dir, "server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if _, _, err := newCert(dir, "client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "luling-test-gateway"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, caKey); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return &Certs{
		Dir:        dir,
		CAFile:     filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client.key"),
		ServerName: "localhost",
	}
}

// MosquittoTLS starts a broker on a free loopback port that requires TLS
// with a client certificate from a fresh NewCerts authority. The broker
// stops when the test ends.
func MosquittoTLS(t testing.TB) *TLSBroker {
	t.Helper()
	bin := findMosquitto()
	if bin == "" {
		missing(t, "mosquitto", "install it with `apt-get install mosquitto` or run `make services`")
	}
	c := NewCerts(t)
	dir := c.Dir
	b := &Broker{t: t, bin: bin, dir: dir, Port: FreePort(t)}
	b.conf = filepath.Join(dir, "mosquitto.conf")
	conf := fmt.Sprintf(`listener %d 127.0.0.1
cafile %s
certfile %s
keyfile %s
require_certificate true
tls_version tlsv1.2
allow_anonymous true
persistence false
max_inflight_messages 100
max_queued_messages 1000000
max_queued_bytes 0
log_dest stdout
log_type error
log_type warning
`, b.Port, c.CAFile, c.ServerCert, c.ServerKey)
	if err := os.WriteFile(b.conf, []byte(conf), 0o644); err != nil {
		t.Fatalf("testenv: write mosquitto config: %v", err)
	}
	b.Start()
	t.Cleanup(func() { b.Stop() })
	return &TLSBroker{Broker: b, CAFile: c.CAFile, CertFile: c.ClientCert, KeyFile: c.ClientKey, ServerName: c.ServerName}
}

// newCert creates a key and a certificate from tmpl, signed by parent (self
// signed when parent is nil), and writes name.pem and name.key into dir.
func newCert(dir, name string, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate %s key: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("%s serial: %w", name, err)
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create %s certificate: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s certificate: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal %s key: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	// Test keys only: readable by the broker after it dropped privileges.
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// ClientTLS returns a client configuration that trusts the authority and
// presents no client certificate.
func (c *Certs) ClientTLS(t testing.TB) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("testenv: no certificate in %s", c.CAFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: c.ServerName}
}
