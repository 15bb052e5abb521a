package pki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCreateReopenIssue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := Open(dir, "harbor")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key file: %v %v", fi, err)
	}
	again, err := Open(dir, "other")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cert.Equal(ca.Cert) {
		t.Fatal("reopening created a new CA")
	}
	is, err := again.IssueClient("harbor", "gw-01", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject.CommonName != "harbor/gw-01" || len(c.URIs) != 1 || c.URIs[0].String() != "luling:gateway:harbor/gw-01" {
		t.Errorf("identity: CN %q URIs %v", c.Subject.CommonName, c.URIs)
	}
	if c.SerialNumber.Text(16) != is.Serial {
		t.Errorf("serial %s, reported %s", c.SerialNumber.Text(16), is.Serial)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate does not verify as a client: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client certificate verifies as a server certificate")
	}
	other, err := again.IssueClient("harbor", "gw-01", time.Hour)
	if err != nil || other.Serial == is.Serial {
		t.Errorf("second certificate: serial %s (first %s), %v", other.Serial, is.Serial, err)
	}
	srv, err := ca.IssueServer([]string{"127.0.0.1", "broker.local"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	sc, _ := x509.ParseCertificate(sp.Certificate[0])
	if _, err := sc.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "broker.local"}); err != nil {
		t.Errorf("server certificate: %v", err)
	}
	if err := sc.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("server certificate IP: %v", err)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	ca, err := Open(dir, "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IssueClient("S", "gw", time.Hour); err == nil || !strings.Contains(err.Error(), "[a-z0-9-]{1,64}") {
		t.Errorf("bad site: %v", err)
	}
	if _, err := ca.IssueClient("s", "gw", 0); err == nil {
		t.Error("zero validity accepted")
	}
	if _, err := ca.IssueServer(nil, time.Hour); err == nil {
		t.Error("server certificate without hosts")
	}
	os.Remove(filepath.Join(dir, CertFile))
	if _, err := Open(dir, "s"); err == nil || !strings.Contains(err.Error(), "exists without ca.pem") {
		t.Errorf("key without certificate: %v", err)
	}
	os.WriteFile(filepath.Join(dir, CertFile), []byte("junk"), 0o644)
	if _, err := Open(dir, "s"); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("junk certificate: %v", err)
	}
}
