package broker

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
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

// TestOversizedPacketClosed: a packet announced larger than MaxPacketBytes
// closes the connection at once, before or after CONNECT, instead of the
// broker allocating and waiting for it.
func TestOversizedPacketClosed(t *testing.T) {
	b := startBroker(t, Config{ConnectTimeout: 5 * time.Minute})
	iu, ip := b.InternalCredential()
	cloud := watch(t, b.URL(), iu, ip, "cloudd", "#")
	// Remaining length 200 MiB as an MQTT variable byte integer.
	huge := []byte{0x80, 0x80, 0x80, 0x64}
	closed := func(c net.Conn, what string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(30 * time.Second)) // only stops a hung test
		for {
			if _, err := c.Read(make([]byte, 64)); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("%s: connection still open", what)
				}
				return
			}
		}
	}
	pre, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	pre.Write(append([]byte{0x10}, huge...)) // CONNECT of 200 MiB
	closed(pre, "oversized CONNECT")

	conn, rc := rawConnect(t, tcpURL(b), userA, passA, "gw-a", nil)
	if rc != 0 {
		t.Fatalf("CONNACK %d", rc)
	}
	conn.Write(append([]byte{0x32}, huge...)) // PUBLISH QoS 1 of 200 MiB
	closed(conn, "oversized PUBLISH")

	// A batch of the largest allowed body still passes.
	a := mustDial(t, tcpURL(b), userA, passA, "gw-a2")
	body := strings.Repeat("x", payload.MaxBodyBytes)
	publish(t, a, baseA+"/telemetry", body, false)
	waitFor(t, "the largest batch at cloudd", func() bool { return cloud.has(baseA+"/telemetry", body) })
}
