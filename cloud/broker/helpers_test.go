package broker

import (
	"crypto/tls"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/internal/testenv"
)

// Gateway A attacks, gateway B is the victim; both are on site s1.
const (
	userA, passA = "s1/gw-a", "secret-a"
	userB, passB = "s1/gw-b", "secret-b"
	baseA        = "gw/v1/s1/gw-a"
	baseB        = "gw/v1/s1/gw-b"
)

func testCreds(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for user, pw := range map[string]string{userA: passA, userB: passB} {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		out[user] = h
	}
	return out
}

// startBroker starts the embedded broker with gateways A and B and, unless
// cfg says otherwise, a plain listener on a free loopback port.
func startBroker(t testing.TB, cfg Config) *Broker {
	t.Helper()
	if cfg.Listen == "" && cfg.TLSListen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	cfg.Credentials = testCreds(t)
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// message is one delivery seen by a recorder.
type message struct {
	topic, payload string
	retained       bool
}

// recorder keeps what a subscriber received.
type recorder struct {
	mu   sync.Mutex
	msgs []message
}

func (r *recorder) handle(_ mqtt.Client, m mqtt.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, message{m.Topic(), string(m.Payload()), m.Retained()})
}

// has reports whether a message with topic and payload arrived.
func (r *recorder) has(topic, payload string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if m.topic == topic && m.payload == payload {
			return true
		}
	}
	return false
}

// under returns the messages whose topic starts with prefix.
func (r *recorder) under(prefix string) []message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []message
	for _, m := range r.msgs {
		if strings.HasPrefix(m.topic, prefix) {
			out = append(out, m)
		}
	}
	return out
}

func clientOpts(brokerURL, user, pass, id string) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().AddBroker(brokerURL).SetClientID(id).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(10 * time.Second)
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	return o
}

// dial connects a paho client; the error is the broker's refusal, if any.
func dial(t testing.TB, o *mqtt.ClientOptions) (mqtt.Client, error) {
	t.Helper()
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(20 * time.Second) {
		t.Fatalf("connect to %v: no answer", o.Servers)
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func mustDial(t testing.TB, brokerURL, user, pass, id string) mqtt.Client {
	t.Helper()
	c, err := dial(t, clientOpts(brokerURL, user, pass, id))
	if err != nil {
		t.Fatalf("%s connect as %q: %v", brokerURL, user, err)
	}
	return c
}

// subscribe subscribes c to filter at QoS 1 and returns the granted QoS
// (0x80: refused).
func subscribe(t testing.TB, c mqtt.Client, filter string, r *recorder) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, r.handle)
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	// One filter: paho keys its result by the filter without "$share/{group}/".
	res := tok.(*mqtt.SubscribeToken).Result()
	if len(res) != 1 {
		t.Fatalf("subscribe %s: result %v", filter, res)
	}
	for _, q := range res {
		return q
	}
	return 0
}

// watch connects a client that subscribes to filter and must be granted it.
func watch(t testing.TB, brokerURL, user, pass, id, filter string) *recorder {
	t.Helper()
	r := &recorder{}
	if q := subscribe(t, mustDial(t, brokerURL, user, pass, id), filter, r); q != 1 {
		t.Fatalf("%s subscribing to %s: granted %#x, want 1", user, filter, q)
	}
	return r
}

// publish publishes at QoS 1 and waits for the PUBACK (or the disconnect
// that an MQTT 3.1.1 broker answers a refused publish with).
func publish(t testing.TB, c mqtt.Client, topic, body string, retained bool) {
	t.Helper()
	if !c.Publish(topic, 1, retained, body).WaitTimeout(20 * time.Second) {
		t.Fatalf("publish %s: no answer", topic)
	}
}

// will is a Last Will for rawConnect.
type will struct {
	topic, payload string
	retain         bool
}

// rawConnect sends an MQTT 3.1.1 CONNECT (paho's encoder) on a connection
// of its own and returns the connection and the CONNACK return code, so
// that a test can then drop the connection without DISCONNECT and make the
// broker publish the will. A connection refused without CONNACK returns
// code 0xff.
func rawConnect(t testing.TB, brokerURL, user, pass, id string, w *will) (net.Conn, byte) {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	switch u.Scheme {
	case "unix":
		conn, err = net.DialTimeout("unix", u.Path, 10*time.Second)
	default:
		conn, err = net.DialTimeout("tcp", u.Host, 10*time.Second)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", brokerURL, err)
	}
	t.Cleanup(func() { conn.Close() })
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
	cp.CleanSession, cp.Keepalive, cp.ClientIdentifier = true, 30, id
	if user != "" {
		cp.UsernameFlag, cp.Username, cp.PasswordFlag, cp.Password = true, user, true, []byte(pass)
	}
	if w != nil {
		cp.WillFlag, cp.WillQos, cp.WillRetain, cp.WillTopic, cp.WillMessage = true, 1, w.retain, w.topic, []byte(w.payload)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if err := cp.Write(conn); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	pk, err := packets.ReadPacket(conn)
	if err != nil {
		return conn, 0xff
	}
	ack, ok := pk.(*packets.ConnackPacket)
	if !ok {
		t.Fatalf("answer to CONNECT: %v", pk)
	}
	conn.SetDeadline(time.Time{})
	return conn, ack.ReturnCode
}

// serverTLS loads the server certificate of certs.
func serverTLS(t testing.TB, certs *testenv.Certs) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certs.ServerCert, certs.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}
