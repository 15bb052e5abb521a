package broker

import (
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/internal/testenv"
)

// The tests below run the attacks of security issue #10 against the real
// embedded broker with paho clients: gateway A's credentials must get
// nothing onto gateway B's topics, by publish, retain, will or subscribe.

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, what, cond)
}

func tcpURL(b *Broker) string { return "tcp://" + b.Addr() }

// retained returns the broker's retained messages on gateway topics.
func retained(b *Broker) map[string]string {
	out := map[string]string{}
	for topic, pk := range b.srv.Topics.Retained.GetAll() {
		if strings.HasPrefix(topic, "gw/") {
			out[topic] = string(pk.Payload)
		}
	}
	return out
}

// noneOnB fails the test for anything that reached B's topics.
func noneOnB(t *testing.T, b *Broker, watchers map[string]*recorder) {
	t.Helper()
	for name, r := range watchers {
		if got := r.under(baseB + "/"); len(got) > 0 {
			t.Errorf("%s received on gateway B's topics: %+v", name, got)
		}
	}
	for topic := range retained(b) {
		if strings.HasPrefix(topic, baseB+"/") {
			t.Errorf("retained message on gateway B's topic %s", topic)
		}
	}
}

func TestAuthentication(t *testing.T) {
	b := startBroker(t, Config{})
	iu, ip := b.InternalCredential()
	for _, c := range []struct{ name, url, user, pass string }{
		{"anonymous", tcpURL(b), "", ""},
		{"wrong password", tcpURL(b), userA, passB},
		{"unknown gateway", tcpURL(b), "s1/gw-c", passA},
		{"internal credential over TCP", tcpURL(b), iu, ip},
		{"internal user, wrong password", b.URL(), iu, ip + "x"},
	} {
		if _, err := dial(t, clientOpts(c.url, c.user, c.pass, "probe")); err == nil || !strings.Contains(err.Error(), "not Authorized") {
			t.Errorf("%s: connect err = %v, want refused as not authorized", c.name, err)
		}
	}
	mustDial(t, tcpURL(b), userA, passA, "gw-a")
	mustDial(t, b.URL(), iu, ip, "cloudd")
}

// TestWillConfined: mochi publishes a Last Will without asking the ACL, so
// the broker checks the will at CONNECT and refuses one the gateway could
// not publish (or retain) itself.
func TestWillConfined(t *testing.T) {
	b := startBroker(t, Config{})
	iu, ip := b.InternalCredential()
	cloud := watch(t, b.URL(), iu, ip, "cloudd", "#")
	cmdB := watch(t, tcpURL(b), userB, passB, "gw-b", baseB+"/cmd/#")

	for _, w := range []will{
		{baseB + "/cmd/evil", `{"action":"open"}`, false},
		{baseB + "/telemetry", `forged`, false},
		{baseB + "/status", `{"online":false}`, true},
		{baseB + "/status", `{"online":false}`, false},
		{baseA + "/telemetry", `retained telemetry`, true}, // A's own topic, but only status may be retained
		{baseA + "/cmd/x", `own command`, false},           // gateways do not write commands
		{"gw/v1/s1/+/status", `wildcard`, false},
	} {
		conn, rc := rawConnect(t, tcpURL(b), userA, passA, "gw-a-will", &w)
		conn.Close() // without DISCONNECT: a broker that accepted the will publishes it now
		if rc != 5 {
			t.Errorf("will %+v: CONNACK return code %d, want 5 (not authorized)", w, rc)
		}
	}
	// A's own retained status will is the contract: it is accepted and
	// published when A drops. Its arrival is also the barrier for the
	// refused wills above.
	conn, rc := rawConnect(t, tcpURL(b), userA, passA, "gw-a-will", &will{baseA + "/status", `{"online":false}`, true})
	if rc != 0 {
		t.Fatalf("own status will: CONNACK return code %d, want 0", rc)
	}
	conn.Close()
	waitFor(t, "A's own will", func() bool { return cloud.has(baseA+"/status", `{"online":false}`) })
	if got := retained(b)[baseA+"/status"]; got != `{"online":false}` {
		t.Errorf("A's will not retained on its status: %q", got)
	}
	noneOnB(t, b, map[string]*recorder{"cloudd": cloud, "gateway B": cmdB})
	if got := cloud.under(baseA + "/telemetry"); len(got) > 0 {
		t.Errorf("refused retained will was published: %+v", got)
	}
}

// TestRetainConfined: a gateway may retain only its own status.
func TestRetainConfined(t *testing.T) {
	b := startBroker(t, Config{})
	iu, ip := b.InternalCredential()
	cloud := watch(t, b.URL(), iu, ip, "cloudd", "#")

	// QoS 1 retained telemetry: refused, and the 3.1.1 client disconnected
	// (its will published, as after any refusal).
	a, err := dial(t, clientOpts(tcpURL(b), userA, passA, "gw-a").SetWill(baseA+"/status", "gone", 1, true))
	if err != nil {
		t.Fatal(err)
	}
	publish(t, a, baseA+"/telemetry", "retained telemetry", true)
	waitFor(t, "A disconnected", func() bool { return !a.IsConnected() })
	waitFor(t, "A's will", func() bool { return cloud.has(baseA+"/status", "gone") })

	// QoS 0 retained events: dropped. Then, on the same connection (the
	// broker handles one client's packets in order), the allowed retained
	// status and an ordinary telemetry message.
	a = mustDial(t, tcpURL(b), userA, passA, "gw-a")
	if !a.Publish(baseA+"/events", 0, true, "retained events").WaitTimeout(10 * time.Second) {
		t.Fatal("QoS 0 publish did not complete")
	}
	publish(t, a, baseA+"/status", `{"online":true}`, true)
	publish(t, a, baseA+"/telemetry", "plain telemetry", false)
	waitFor(t, "A's telemetry", func() bool { return cloud.has(baseA+"/telemetry", "plain telemetry") })
	if !a.IsConnected() {
		t.Error("A disconnected for allowed publishes")
	}
	want := map[string]string{baseA + "/status": `{"online":true}`}
	if got := retained(b); len(got) != 1 || got[baseA+"/status"] != want[baseA+"/status"] {
		t.Errorf("retained = %v, want %v", got, want)
	}
	for _, topic := range []string{baseA + "/events"} {
		if got := cloud.under(topic); len(got) > 0 {
			t.Errorf("refused retained publish reached cloudd: %+v", got)
		}
	}
	if cloud.has(baseA+"/telemetry", "retained telemetry") {
		t.Error("refused retained telemetry reached cloudd")
	}
}

// TestPublishConfined: A cannot publish on B's topics, at QoS 1 (refused,
// disconnected) or QoS 0 (dropped).
func TestPublishConfined(t *testing.T) {
	b := startBroker(t, Config{})
	iu, ip := b.InternalCredential()
	cloud := watch(t, b.URL(), iu, ip, "cloudd", "#")
	cmdB := watch(t, tcpURL(b), userB, passB, "gw-b", baseB+"/cmd/#")

	for _, topic := range []string{baseB + "/telemetry", baseB + "/cmd/evil", baseB + "/status", baseA + "/cmd/x"} {
		a := mustDial(t, tcpURL(b), userA, passA, "gw-a")
		publish(t, a, topic, "forged", false)
		waitFor(t, "A disconnected after publishing on "+topic, func() bool { return !a.IsConnected() })
	}
	a := mustDial(t, tcpURL(b), userA, passA, "gw-a")
	if !a.Publish(baseB+"/cmd/evil", 0, false, "forged qos0").WaitTimeout(10 * time.Second) {
		t.Fatal("QoS 0 publish did not complete")
	}
	publish(t, a, baseA+"/telemetry", "own", false) // positive control and barrier
	waitFor(t, "A's own telemetry", func() bool { return cloud.has(baseA+"/telemetry", "own") })
	noneOnB(t, b, map[string]*recorder{"cloudd": cloud, "gateway B": cmdB})
	if got := cloud.under(baseA + "/cmd/"); len(got) > 0 {
		t.Errorf("A published a command to itself: %+v", got)
	}
}

// TestSubscribeConfined: A cannot subscribe to B's commands; B gets its
// own.
func TestSubscribeConfined(t *testing.T) {
	b := startBroker(t, Config{})
	iu, ip := b.InternalCredential()
	cloud := mustDial(t, b.URL(), iu, ip, "cloudd")
	a := mustDial(t, tcpURL(b), userA, passA, "gw-a")
	got := &recorder{}
	for _, f := range []string{baseB + "/cmd/#", baseB + "/#", "gw/v1/+/+/cmd/#", "gw/v1/#", "#", "$share/g/" + baseB + "/cmd/#"} {
		if q := subscribe(t, a, f, got); q != 0x80 {
			t.Errorf("A subscribing to %s: granted %#x, want 0x80 (refused)", f, q)
		}
	}
	if q := subscribe(t, a, baseA+"/cmd/#", got); q != 1 {
		t.Fatalf("A subscribing to its own commands: granted %#x", q)
	}
	cmdB := watch(t, tcpURL(b), userB, passB, "gw-b", baseB+"/cmd/#")
	publish(t, cloud, baseB+"/cmd/1", "for B", false)
	publish(t, cloud, baseA+"/cmd/2", "for A", false)
	waitFor(t, "B's command at B", func() bool { return cmdB.has(baseB+"/cmd/1", "for B") })
	waitFor(t, "A's command at A", func() bool { return got.has(baseA+"/cmd/2", "for A") })
	if m := got.under(baseB); len(m) > 0 {
		t.Errorf("A received B's commands: %+v", m)
	}
}

func TestRetainAllowed(t *testing.T) {
	for _, c := range []struct {
		user, topic string
		want        bool
	}{
		{"s1/gw-a", "gw/v1/s1/gw-a/status", true},
		{"s1/gw-a", "gw/v1/s1/gw-b/status", false},
		{"s1/gw-a", "gw/v1/s1/gw-a/telemetry", false},
		{"s1/gw-a", "gw/v1/s1/gw-a/cmd-reply/status", false},
		{"s1/gw-a/x", "gw/v1/s1/gw-a/x/status", false},
		{"", "gw/v1///status", false},
	} {
		if got := RetainAllowed(c.user, c.topic); got != c.want {
			t.Errorf("RetainAllowed(%q, %q) = %v, want %v", c.user, c.topic, got, c.want)
		}
	}
}

// TestSessionTakeoverRefused: A cannot use B's or cloudd's client id to
// push them off and inherit their sessions (subscriptions and in-flight
// messages, which mochi resends without ACL check). Reconnecting with its
// own id still takes over its own session.
func TestSessionTakeoverRefused(t *testing.T) {
	b := startBroker(t, Config{})
	iu, ip := b.InternalCredential()
	cloud := mustDial(t, b.URL(), iu, ip, "cloudd-host")
	cloudSeen := &recorder{}
	if q := subscribe(t, cloud, "gw/v1/+/+/telemetry", cloudSeen); q != 1 {
		t.Fatalf("cloudd subscription granted %#x", q)
	}
	cmdB := watch(t, tcpURL(b), userB, passB, "luling-s1-gw-b", baseB+"/cmd/#")
	for _, id := range []string{"luling-s1-gw-b", "cloudd-host"} {
		for _, clean := range []bool{true, false} {
			_, err := dial(t, clientOpts(tcpURL(b), userA, passA, id).SetCleanSession(clean))
			if err == nil || !strings.Contains(err.Error(), "not Authorized") {
				t.Errorf("A with client id %s (clean %v): err = %v, want refused", id, clean, err)
			}
		}
	}
	// B and cloudd are still connected with their subscriptions.
	publish(t, cloud, baseB+"/cmd/1", "for B", false)
	waitFor(t, "B's command at B", func() bool { return cmdB.has(baseB+"/cmd/1", "for B") })
	for _, id := range []string{"luling-s1-gw-b", "cloudd-host"} {
		if known, connected, _ := b.Session(id); !known || !connected {
			t.Errorf("session %s: known %v, connected %v", id, known, connected)
		}
	}
	a := mustDial(t, tcpURL(b), userA, passA, "luling-s1-gw-a")
	publish(t, a, baseA+"/telemetry", "first", false)
	a2 := mustDial(t, tcpURL(b), userA, passA, "luling-s1-gw-a")
	waitFor(t, "A's first connection taken over by its second", func() bool { return !a.IsConnected() })
	publish(t, a2, baseA+"/telemetry", "second", false)
	waitFor(t, "A's telemetry at cloudd", func() bool { return cloudSeen.has(baseA+"/telemetry", "second") })
}

// TestLoginVerificationBounded: password checks (bcrypt) run in a bounded
// number of slots; a login that finds none free within the wait is refused,
// cloudd's own login is not affected, and a freed slot lets gateways in.
func TestLoginVerificationBounded(t *testing.T) {
	b := startBroker(t, Config{})
	b.hook.verifyWait = 50 * time.Millisecond
	for range cap(b.hook.verify) { // the test takes every slot
		b.hook.verify <- struct{}{}
	}
	if _, err := dial(t, clientOpts(tcpURL(b), userA, passA, "gw-a")); err == nil {
		t.Error("gateway logged in while every verification slot was taken")
	}
	iu, ip := b.InternalCredential()
	mustDial(t, b.URL(), iu, ip, "cloudd")
	<-b.hook.verify
	mustDial(t, tcpURL(b), userA, passA, "gw-a")
}
