package broker

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/luling-edge/luling/internal/testenv"
)

// TestTLSListener: gateways log in over TLS; a plain MQTT connection or a
// TLS 1.1 handshake on the TLS port is refused.
func TestTLSListener(t *testing.T) {
	certs := testenv.NewCerts(t)
	b := startBroker(t, Config{TLSListen: "127.0.0.1:0", TLS: serverTLS(t, certs)})
	if b.Addr() != "" {
		t.Errorf("plain listener %s opened without Config.Listen", b.Addr())
	}
	iu, ip := b.InternalCredential()
	cloud := watch(t, b.URL(), iu, ip, "cloudd", "#")
	tlsURL := "ssl://" + b.TLSAddr()

	a, err := dial(t, clientOpts(tlsURL, userA, passA, "gw-a").SetTLSConfig(certs.ClientTLS(t)))
	if err != nil {
		t.Fatalf("gateway over TLS: %v", err)
	}
	publish(t, a, baseA+"/telemetry", "over tls", false)
	waitFor(t, "telemetry over TLS", func() bool { return cloud.has(baseA+"/telemetry", "over tls") })

	if _, err := dial(t, clientOpts(tlsURL, userA, passB, "gw-a-wrong").SetTLSConfig(certs.ClientTLS(t))); err == nil {
		t.Error("wrong password accepted over TLS")
	}
	if _, err := dial(t, clientOpts("tcp://"+b.TLSAddr(), userA, passA, "gw-a-plain")); err == nil {
		t.Error("plain MQTT connection to the TLS port accepted")
	}
	if _, rc := rawConnect(t, "tcp://"+b.TLSAddr(), userA, passA, "gw-a-raw", nil); rc != 0xff {
		t.Errorf("plain CONNECT to the TLS port answered with CONNACK %d", rc)
	}
	old := certs.ClientTLS(t)
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := dial(t, clientOpts(tlsURL, userA, passA, "gw-a-tls11").SetTLSConfig(old)); err == nil {
		t.Error("TLS 1.1 accepted")
	}
}

func TestStartTLSConfigErrors(t *testing.T) {
	certs := testenv.NewCerts(t)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{TLSListen: "127.0.0.1:0"}, "TLS listener 127.0.0.1:0: no server certificate"},
		{Config{TLSListen: "127.0.0.1:0", TLS: &tls.Config{}}, "no server certificate"},
		{Config{Listen: "127.0.0.1:0", TLS: serverTLS(t, certs)}, "without a TLS listen address"},
		{Config{Listen: "127.0.0.1:bad"}, "listen on 127.0.0.1:bad"},
	} {
		b, err := Start(c.cfg)
		if err == nil {
			b.Close()
			t.Errorf("%+v: started", c.cfg)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want it to contain %q", c.cfg, err, c.want)
		}
	}
}
