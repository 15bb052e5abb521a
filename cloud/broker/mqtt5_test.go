package broker

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// conn5 is a bare MQTT 5 connection, encoded with mochi's packet codec,
// for the paths that differ from 3.1.1: reason codes in CONNACK and PUBACK.
type conn5 struct {
	t  *testing.T
	c  net.Conn
	rd *bufio.Reader
}

func dial5(t *testing.T, addr, user, pass, id string, w *will) (*conn5, byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	cn := &conn5{t: t, c: c, rd: bufio.NewReader(c)}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: id,
			UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pass)}}
	if w != nil {
		pk.Connect.WillFlag, pk.Connect.WillQos, pk.Connect.WillRetain = true, 1, w.retain
		pk.Connect.WillTopic, pk.Connect.WillPayload = w.topic, []byte(w.payload)
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	cn.write(buf.Bytes())
	typ, body := cn.read()
	if typ != packets.Connack || len(body) < 2 {
		t.Fatalf("answer to CONNECT: type %d, body %x", typ, body)
	}
	return cn, body[1]
}

func (cn *conn5) write(b []byte) {
	cn.t.Helper()
	if _, err := cn.c.Write(b); err != nil {
		cn.t.Fatalf("write: %v", err)
	}
}

// read returns the next packet's type and body; type 0 when the broker
// closed the connection.
func (cn *conn5) read() (byte, []byte) {
	cn.t.Helper()
	first, err := cn.rd.ReadByte()
	if err != nil {
		return 0, nil
	}
	n, mult := 0, 1
	for {
		b, err := cn.rd.ReadByte()
		if err != nil {
			return 0, nil
		}
		n += int(b&0x7f) * mult
		if b&0x80 == 0 {
			break
		}
		mult *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(cn.rd, body); err != nil {
		return 0, nil
	}
	return first >> 4, body
}

// publish sends a PUBLISH and returns the reason code of the PUBACK
// (0 when the PUBACK carries none), or 0xff when the broker disconnected.
func (cn *conn5) publish(topic, body string, qos byte, retain bool) byte {
	cn.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		ProtocolVersion: 5, TopicName: topic, Payload: []byte(body), PacketID: 7}
	var buf bytes.Buffer
	if err := pk.PublishEncode(&buf); err != nil {
		cn.t.Fatal(err)
	}
	cn.write(buf.Bytes())
	for {
		typ, b := cn.read()
		switch typ {
		case 0, packets.Disconnect:
			return 0xff
		case packets.Puback, packets.Pubrec:
			if len(b) > 2 {
				return b[2]
			}
			return 0
		}
	}
}

// TestMQTT5Refusals: an MQTT 5 client gets "not authorized" (0x87) for a
// will on another gateway's topic and a negative PUBACK for a refused
// retain at QoS 1; a refused retain at QoS 2 disconnects it.
func TestMQTT5Refusals(t *testing.T) {
	b := startBroker(t, Config{})
	iu, ip := b.InternalCredential()
	cloud := watch(t, b.URL(), iu, ip, "cloudd", "#")
	if _, rc := dial5(t, b.Addr(), userA, passA, "gw-a5", &will{baseB + "/cmd/evil", "x", false}); rc != packets.ErrNotAuthorized.Code {
		t.Errorf("will on B's command topic: CONNACK reason %#x, want %#x", rc, packets.ErrNotAuthorized.Code)
	}
	if _, rc := dial5(t, b.Addr(), userA, passB, "gw-a5", nil); rc != packets.ErrBadUsernameOrPassword.Code {
		t.Errorf("wrong password: CONNACK reason %#x", rc)
	}
	a, rc := dial5(t, b.Addr(), userA, passA, "gw-a5", &will{baseA + "/status", `{"online":false}`, true})
	if rc != 0 {
		t.Fatalf("own status will: CONNACK reason %#x", rc)
	}
	if rc := a.publish(baseA+"/telemetry", "retained", 1, true); rc != packets.ErrNotAuthorized.Code {
		t.Errorf("retained telemetry at QoS 1: PUBACK reason %#x, want %#x", rc, packets.ErrNotAuthorized.Code)
	}
	if rc := a.publish(baseB+"/telemetry", "forged", 1, false); rc != packets.ErrNotAuthorized.Code {
		t.Errorf("B's telemetry at QoS 1: PUBACK reason %#x, want %#x", rc, packets.ErrNotAuthorized.Code)
	}
	if rc := a.publish(baseA+"/telemetry", "own", 1, false); rc != 0 {
		t.Errorf("own telemetry: PUBACK reason %#x, want 0", rc)
	}
	waitFor(t, "own telemetry at cloudd", func() bool { return cloud.has(baseA+"/telemetry", "own") })
	if rc := a.publish(baseA+"/events", "retained", 2, true); rc != 0xff {
		t.Errorf("retained events at QoS 2: answer %#x, want a disconnect", rc)
	}
	waitFor(t, "A's will after the disconnect", func() bool { return cloud.has(baseA+"/status", `{"online":false}`) })
	if got := cloud.under(baseB); len(got) > 0 {
		t.Errorf("reached B's topics: %+v", got)
	}
	if got := retained(b); len(got) != 1 {
		t.Errorf("retained = %v, want only A's status", got)
	}
	if cloud.has(baseA+"/telemetry", "retained") || len(cloud.under(baseA+"/events")) > 0 {
		t.Error("a refused retained publish reached cloudd")
	}
}
