package broker

import (
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/cloud/pki"
	"github.com/luling-edge/luling/cloud/registry"
	"github.com/luling-edge/luling/internal/testenv"
)

// startWithRegistry starts the broker on a registry file that changes
// under it, wired as cloudd wires it: every reload re-checks the
// connected gateways.
func startWithRegistry(t *testing.T, cfg Config) (*Broker, *registry.File, *registry.Live) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := &registry.File{Path: path}
	live := registry.NewLive(path, registry.LiveOptions{})
	cfg.Gateways = live
	if cfg.Listen == "" && cfg.TLSListen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	live.OnChange(func() { b.Revalidate() })
	return b, f, live
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func bhash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	must(t, err)
	return string(h)
}

// waitDisconnected waits until the broker has closed c's connection.
func waitDisconnected(t *testing.T, c mqtt.Client, what string) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, what, func() bool { return !c.IsConnectionOpen() })
}

// TestRegistryPasswords: a gateway the broker has never seen logs in once
// it is added to the registry, is disconnected at once when disabled or
// removed, and static credentials keep working beside the registry; no
// restart anywhere.
func TestRegistryPasswords(t *testing.T) {
	b, f, live := startWithRegistry(t, Config{Credentials: testCreds(t)})
	url := "tcp://" + b.Addr()
	const user, pw = "s1/gw-new", "pw-new"
	if _, err := dial(t, clientOpts(url, user, pw, "gw-new")); err == nil {
		t.Fatal("gateway unknown to the registry logged in")
	}
	_, err := f.Add("s1", "gw-new")
	must(t, err)
	must(t, f.SetPassword("s1", "gw-new", bhash(t, pw)))
	live.Reload()
	c, err := dial(t, clientOpts(url, user, pw, "gw-new"))
	if err != nil {
		t.Fatalf("registered gateway: %v", err)
	}
	if _, err := dial(t, clientOpts(url, user, "wrong", "gw-new-2")); err == nil {
		t.Error("wrong password accepted")
	}
	static := mustDial(t, url, userA, passA, "gw-a") // from the credentials file

	must(t, f.SetEnabled("s1", "gw-new", false))
	live.Reload()
	waitDisconnected(t, c, "disabled gateway disconnected")
	if _, err := dial(t, clientOpts(url, user, pw, "gw-new")); err == nil {
		t.Error("disabled gateway logged in")
	}
	if !static.IsConnectionOpen() {
		t.Error("a gateway from the credentials file was disconnected by a registry change")
	}
	must(t, f.SetEnabled("s1", "gw-new", true))
	live.Reload()
	c, err = dial(t, clientOpts(url, user, pw, "gw-new"))
	if err != nil {
		t.Fatalf("re-enabled gateway: %v", err)
	}
	must(t, f.Remove("s1", "gw-new"))
	live.Reload()
	waitDisconnected(t, c, "removed gateway disconnected")
	if _, err := dial(t, clientOpts(url, user, pw, "gw-new")); err == nil {
		t.Error("removed gateway logged in")
	}
}

// certClient is a gateway's TLS configuration with an issued certificate.
func certClient(t *testing.T, ca *pki.CA, is pki.Issued) *tls.Config {
	t.Helper()
	pair, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	must(t, err)
	return &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// issue issues and records a client certificate.
func issue(t *testing.T, ca *pki.CA, f *registry.File, site, gw string) pki.Issued {
	t.Helper()
	is, err := ca.IssueClient(site, gw, time.Hour)
	must(t, err)
	must(t, f.AddCert(site, gw, registry.Cert{Serial: is.Serial, NotAfter: is.NotAfter}))
	return is
}

// TestClientCertificates: with mTLS required, a registered certificate
// alone logs its gateway in and confines it to its own topics; another
// gateway's certificate cannot publish there nor claim its username; an
// unrecorded certificate, one from another CA, and no certificate are
// refused; a rotated certificate works beside the old one, and revoking
// the old one disconnects the session using it and refuses it from then
// on.
func TestClientCertificates(t *testing.T) {
	ca, err := pki.Open(filepath.Join(t.TempDir(), "ca"), "s1")
	must(t, err)
	srv, err := ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	must(t, err)
	pair, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	must(t, err)
	b, f, live := startWithRegistry(t, Config{TLSListen: "127.0.0.1:0", TLS: &tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
	}})
	for _, gw := range []string{"gw-a", "gw-b"} {
		_, err := f.Add("s1", gw)
		must(t, err)
	}
	certA, certB := issue(t, ca, f, "s1", "gw-a"), issue(t, ca, f, "s1", "gw-b")
	unrecorded, err := ca.IssueClient("s1", "gw-a", time.Hour)
	must(t, err)
	live.Reload()
	iu, ip := b.InternalCredential()
	cloud := watch(t, b.URL(), iu, ip, "cloudd", "#")
	url := "ssl://" + b.TLSAddr()

	a, err := dial(t, clientOpts(url, "", "", "gw-a").SetTLSConfig(certClient(t, ca, certA)))
	if err != nil {
		t.Fatalf("gateway A by certificate alone: %v", err)
	}
	publish(t, a, baseA+"/telemetry", "from A", false)
	testenv.WaitFor(t, 10*time.Second, "A's telemetry", func() bool { return cloud.has(baseA+"/telemetry", "from A") })
	if q := subscribe(t, a, baseB+"/cmd/#", &recorder{}); q != 0x80 {
		t.Errorf("A subscribed to B's commands: granted %#x", q)
	}

	bc, err := dial(t, clientOpts(url, "", "", "gw-b").SetTLSConfig(certClient(t, ca, certB)))
	if err != nil {
		t.Fatalf("gateway B: %v", err)
	}
	publish(t, bc, baseA+"/telemetry", "B posing as A", false)
	waitDisconnected(t, bc, "B disconnected for publishing under A's topics")
	if _, err := dial(t, clientOpts(url, userA, "", "gw-b-as-a").SetTLSConfig(certClient(t, ca, certB))); err == nil {
		t.Error("B's certificate logged in with A's username")
	}
	if _, err := dial(t, clientOpts(url, "", "", "gw-unrec").SetTLSConfig(certClient(t, ca, unrecorded))); err == nil {
		t.Error("a certificate the registry does not list logged in")
	}
	otherCA, err := pki.Open(filepath.Join(t.TempDir(), "other"), "s1")
	must(t, err)
	foreign, err := otherCA.IssueClient("s1", "gw-a", time.Hour)
	must(t, err)
	must(t, f.AddCert("s1", "gw-a", registry.Cert{Serial: foreign.Serial}))
	live.Reload()
	fc := certClient(t, ca, foreign) // trusts our server, presents the other CA's certificate
	if _, err := dial(t, clientOpts(url, "", "", "gw-foreign").SetTLSConfig(fc)); err == nil {
		t.Error("a certificate from another CA logged in")
	}
	if _, err := dial(t, clientOpts(url, userA, passA, "gw-nocert").SetTLSConfig(&tls.Config{RootCAs: ca.Pool()})); err == nil {
		t.Error("a client without certificate logged in where one is required")
	}

	rotated := issue(t, ca, f, "s1", "gw-a")
	live.Reload()
	a2, err := dial(t, clientOpts(url, "", "", "gw-a-new").SetTLSConfig(certClient(t, ca, rotated)))
	if err != nil {
		t.Fatalf("rotated certificate: %v", err)
	}
	if !a.IsConnectionOpen() {
		t.Fatal("the old certificate's session ended when a new one was issued")
	}
	must(t, f.RevokeCert("s1", "gw-a", certA.Serial))
	live.Reload()
	waitDisconnected(t, a, "session on the revoked certificate disconnected")
	if _, err := dial(t, clientOpts(url, "", "", "gw-a").SetTLSConfig(certClient(t, ca, certA))); err == nil {
		t.Error("revoked certificate logged in")
	}
	if !a2.IsConnectionOpen() {
		t.Error("revoking the old certificate disconnected the new one")
	}
	publish(t, a2, baseA+"/telemetry", "rotated", false)
	testenv.WaitFor(t, 10*time.Second, "telemetry on the rotated certificate", func() bool { return cloud.has(baseA+"/telemetry", "rotated") })
}

// TestClientCertificatesOptional: with VerifyClientCertIfGiven, password
// logins work on the TLS listener beside certificate logins.
func TestClientCertificatesOptional(t *testing.T) {
	ca, err := pki.Open(filepath.Join(t.TempDir(), "ca"), "s1")
	must(t, err)
	srv, err := ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	must(t, err)
	pair, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	must(t, err)
	b, f, live := startWithRegistry(t, Config{Credentials: testCreds(t), TLSListen: "127.0.0.1:0", TLS: &tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool(), ClientAuth: tls.VerifyClientCertIfGiven,
	}})
	_, err = f.Add("s1", "gw-c")
	must(t, err)
	is := issue(t, ca, f, "s1", "gw-c")
	live.Reload()
	url := "ssl://" + b.TLSAddr()
	if _, err := dial(t, clientOpts(url, userA, passA, "gw-a").SetTLSConfig(&tls.Config{RootCAs: ca.Pool()})); err != nil {
		t.Errorf("password login without certificate: %v", err)
	}
	if _, err := dial(t, clientOpts(url, "s1/gw-c", "", "gw-c").SetTLSConfig(certClient(t, ca, is))); err != nil {
		t.Errorf("certificate login with its own username: %v", err)
	}
	if _, err := dial(t, clientOpts(url, "s1/gw-c", "guess", "gw-c2").SetTLSConfig(&tls.Config{RootCAs: ca.Pool()})); err == nil {
		t.Error("certificate-only gateway logged in with a password")
	}
}

func TestStartClientAuthErrors(t *testing.T) {
	certs := testenv.NewCerts(t)
	for _, ca := range []tls.ClientAuthType{tls.RequestClientCert, tls.RequireAnyClientCert, tls.RequireAndVerifyClientCert} {
		cfg := serverTLS(t, certs)
		cfg.ClientAuth = ca
		if b, err := Start(Config{TLSListen: "127.0.0.1:0", TLS: cfg}); err == nil {
			b.Close()
			t.Errorf("ClientAuth %v without verification or CAs: started", ca)
		}
	}
}

// TestExpiredCertificateSession: a session on a certificate that expired
// since its handshake is ended by Revalidate, a fresh certificate's is not.
func TestExpiredCertificateSession(t *testing.T) {
	ca, err := pki.Open(filepath.Join(t.TempDir(), "ca"), "s1")
	must(t, err)
	srv, err := ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	must(t, err)
	pair, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	must(t, err)
	b, f, live := startWithRegistry(t, Config{TLSListen: "127.0.0.1:0", TLS: &tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert,
	}})
	for _, gw := range []string{"gw-a", "gw-b"} {
		_, err := f.Add("s1", gw)
		must(t, err)
	}
	short, err := ca.IssueClient("s1", "gw-a", 6*time.Second)
	must(t, err)
	must(t, f.AddCert("s1", "gw-a", registry.Cert{Serial: short.Serial, NotAfter: short.NotAfter}))
	long := issue(t, ca, f, "s1", "gw-b")
	live.Reload()
	url := "ssl://" + b.TLSAddr()
	a, err := dial(t, clientOpts(url, "", "", "gw-a").SetTLSConfig(certClient(t, ca, short)))
	if err != nil {
		t.Fatalf("short-lived certificate before expiry: %v", err)
	}
	other, err := dial(t, clientOpts(url, "", "", "gw-b").SetTLSConfig(certClient(t, ca, long)))
	must(t, err)
	if n := b.Revalidate(); n != 0 || !a.IsConnectionOpen() {
		t.Fatalf("Revalidate before expiry disconnected %d", n)
	}
	testenv.WaitFor(t, 20*time.Second, "expired session ended", func() bool {
		b.Revalidate()
		return !a.IsConnectionOpen()
	})
	if !other.IsConnectionOpen() {
		t.Error("a valid certificate's session was ended")
	}
}
