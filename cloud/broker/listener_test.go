package broker

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/testenv"
)

// TestSilentConnectionsClosed: a connection that sends no CONNECT (or no
// TLS handshake) is closed after ConnectTimeout; a client that did connect
// keeps its connection past it.
func TestSilentConnectionsClosed(t *testing.T) {
	certs := testenv.NewCerts(t)
	b := startBroker(t, Config{Listen: "127.0.0.1:0", TLSListen: "127.0.0.1:0", TLS: serverTLS(t, certs), ConnectTimeout: 300 * time.Millisecond})
	iu, ip := b.InternalCredential()
	cloud := watch(t, b.URL(), iu, ip, "cloudd", "#")
	a := mustDial(t, tcpURL(b), userA, passA, "gw-a")
	for _, addr := range []string{b.Addr(), b.TLSAddr()} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(30 * time.Second)) // only stops a hung test
		_, err = c.Read(make([]byte, 1))
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("silent connection to %s: read = %v, want it closed by the broker", addr, err)
		}
	}
	// The silent connections were accepted after A's and closed on their
	// limit: A's has outlived its own.
	publish(t, a, baseA+"/telemetry", "still here", false)
	waitFor(t, "A's telemetry after the limit", func() bool { return cloud.has(baseA+"/telemetry", "still here") })
}
