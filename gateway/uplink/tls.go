package uplink

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// TLSConfig builds the TLS settings for an ssl:// or wss:// broker.
//
// caFile is a PEM bundle of the authorities trusted for the broker's
// certificate ("" = the system roots). certFile and keyFile are the
// gateway's client certificate and key in PEM (both or neither).
// serverName overrides the name checked in the broker's certificate ("" =
// the host of the broker URL). insecure skips verifying the broker's
// certificate; it exists for commissioning on a bench and must not be used
// in the field.
func TLSConfig(caFile, certFile, keyFile, serverName string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: insecure,
	}
	if caFile != "" {
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("uplink tls: ca file %s: %w", caFile, err)
		}
		pool := x509.NewCertPool()
		n, err := addPEMCerts(pool, pemBytes)
		if err != nil {
			return nil, fmt.Errorf("uplink tls: ca file %s: %w", caFile, err)
		}
		if n == 0 {
			return nil, fmt.Errorf("uplink tls: ca file %s: no PEM CERTIFICATE block found (want one or more -----BEGIN CERTIFICATE----- blocks)", caFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile != "" && keyFile != "":
		if _, err := os.Stat(certFile); err != nil {
			return nil, fmt.Errorf("uplink tls: client certificate file %s: %w", certFile, err)
		}
		if _, err := os.Stat(keyFile); err != nil {
			return nil, fmt.Errorf("uplink tls: client key file %s: %w", keyFile, err)
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("uplink tls: client certificate %s with key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case certFile != "":
		return nil, fmt.Errorf("uplink tls: client certificate file %s given without a key file", certFile)
	case keyFile != "":
		return nil, fmt.Errorf("uplink tls: client key file %s given without a certificate file", keyFile)
	}
	return cfg, nil
}

// addPEMCerts adds every CERTIFICATE block of b to pool and reports how many
// it added. Unlike CertPool.AppendCertsFromPEM it says which block is bad.
func addPEMCerts(pool *x509.CertPool, b []byte) (int, error) {
	n, block := 0, 0
	for len(b) > 0 {
		var p *pem.Block
		p, b = pem.Decode(b)
		if p == nil {
			break
		}
		block++
		if p.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(p.Bytes)
		if err != nil {
			return n, fmt.Errorf("PEM block %d: %w", block, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 && block > 0 {
		return 0, errors.New("no CERTIFICATE block among its PEM blocks (is it a key?)")
	}
	return n, nil
}
