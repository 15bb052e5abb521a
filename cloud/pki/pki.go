// Package pki is the site CA that cloudd keeps for its gateways: an ECDSA
// P-256 key and a self-signed CA certificate in a folder (ca.pem, and
// ca-key.pem with mode 0600), created on first use. It issues each
// gateway a client certificate whose subject common name is the
// gateway's identity "{site}/{gateway}" (also as the URI SAN
// "luling:gateway:{site}/{gateway}"), and the broker's server
// certificate. Which certificates are still good is not the CA's
// business: the gateway registry records each serial and its revocation,
// and the broker asks the registry at every handshake.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/luling-edge/luling/internal/safefile"
	"github.com/luling-edge/luling/payload"
)

// File names inside the CA folder.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca-key.pem"
)

// CA is a loaded site CA.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
	// Now is the time source for validity periods; time.Now when nil.
	Now func() time.Time
}

// Issued is a certificate the CA issued, with its new private key.
type Issued struct {
	CertPEM  []byte
	KeyPEM   []byte // PKCS #8
	Serial   string // lowercase hex, as the registry records it
	NotAfter time.Time
}

// Open loads the CA from dir, creating it (named after name) when dir
// holds none yet.
func Open(dir, name string) (*CA, error) {
	ca, err := load(dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return ca, err
	}
	if _, kerr := os.Stat(filepath.Join(dir, KeyFile)); kerr == nil {
		return nil, fmt.Errorf("pki: %s exists without %s: restore the certificate or remove the key (every gateway certificate would have to be issued again)", filepath.Join(dir, KeyFile), CertFile)
	}
	return create(dir, name)
}

func load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA in %s: %w", dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate %s: %w", filepath.Join(dir, CertFile), err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("pki: %s is not a CA certificate", filepath.Join(dir, CertFile))
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: CA key %s cannot sign", filepath.Join(dir, KeyFile))
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: signer}, nil
}

func create(dir, name string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: CA folder: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name + " site CA", Organization: []string{"luling"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	// The key first: a folder with a certificate but no key is refused
	// by Open, one with a key alone is refused too, never silently
	// replaced.
	if err := safefile.Replace(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("pki: write CA key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := safefile.Replace(filepath.Join(dir, CertFile), certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("pki: write CA certificate: %w", err)
	}
	return load(dir)
}

func newSerial() (*big.Int, error) {
	max := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, max)
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// Pool returns a pool holding the CA certificate (the broker's client CAs,
// a gateway's root CAs).
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// IssueClient issues gateway site/gw a client certificate valid for
// validity.
func (ca *CA) IssueClient(site, gw string, validity time.Duration) (Issued, error) {
	if !payload.ValidID(site) || !payload.ValidID(gw) {
		return Issued{}, fmt.Errorf("pki: site %q, gateway %q: want [a-z0-9-]{1,64} each", site, gw)
	}
	id := site + "/" + gw
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: id, Organization: []string{"luling"}, OrganizationalUnit: []string{site}},
		URIs:        []*url.URL{{Scheme: "luling", Opaque: "gateway:" + id}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, validity)
}

// IssueServer issues a server certificate for hosts (DNS names or IP
// addresses), e.g. for the embedded broker's TLS listener.
func (ca *CA) IssueServer(hosts []string, validity time.Duration) (Issued, error) {
	if len(hosts) == 0 {
		return Issued{}, errors.New("pki: server certificate: no host names")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"luling"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, validity)
}

func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (Issued, error) {
	if validity <= 0 {
		return Issued{}, fmt.Errorf("pki: validity %s: want a positive duration", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, fmt.Errorf("pki: key: %w", err)
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return Issued{}, err
	}
	now := time.Now()
	if ca.Now != nil {
		now = ca.Now()
	}
	tmpl.NotBefore = now.Add(-5 * time.Minute) // gateway clocks run a little behind
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return Issued{}, fmt.Errorf("pki: issue %s: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Issued{}, fmt.Errorf("pki: key: %w", err)
	}
	return Issued{
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Serial:   tmpl.SerialNumber.Text(16),
		NotAfter: tmpl.NotAfter.UTC().Truncate(time.Second),
	}, nil
}
