package broker

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/luling-edge/luling/cloud/command"
	"github.com/luling-edge/luling/cloud/ingest"
	"github.com/luling-edge/luling/internal/testenv"
)

// docBlock returns the fenced block that follows the marker
// "<!-- test: name" in docs/cloudd.md.
func docBlock(t *testing.T, name string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "cloudd.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- test: "+name+" ")
	if !ok {
		t.Fatalf("docs/cloudd.md: no block marked <!-- test: %s", name)
	}
	_, rest, ok = strings.Cut(rest, "```\n")
	body, _, closed := strings.Cut(rest, "```\n")
	if !ok || !closed {
		t.Fatalf("docs/cloudd.md: block %s: no fenced block after the marker", name)
	}
	return body
}

// mosquittoFromDocs starts Mosquitto with the access control of
// docs/cloudd.md: its mosquitto.conf lines with the ports and paths moved
// to the test's, its ACL file verbatim, and a password file for cloudd,
// gateway A and gateway B. It returns the broker and the URLs of its plain
// and TLS listeners.
func mosquittoFromDocs(t *testing.T, certs *testenv.Certs) (b *testenv.Broker, plainURL, tlsURL string) {
	t.Helper()
	conf, acl := docBlock(t, "mosquitto-auth.conf"), docBlock(t, "mosquitto-acl")
	dir := certs.Dir // readable by the mosquitto user, should the broker drop to it
	plain, secure := testenv.FreePort(t), testenv.FreePort(t)
	ports := map[string]int{"1883": plain, "8883": secure}
	listener := regexp.MustCompile(`(?m)^listener (\d+)( 127\.0\.0\.1)?$`)
	seen := 0
	conf = listener.ReplaceAllStringFunc(conf, func(line string) string {
		m := listener.FindStringSubmatch(line)
		p, ok := ports[m[1]]
		if !ok {
			t.Fatalf("docs/cloudd.md: mosquitto-auth.conf: unexpected %q", line)
		}
		seen++
		return "listener " + strconv.Itoa(p) + " 127.0.0.1"
	})
	if seen != 2 {
		t.Fatalf("docs/cloudd.md: mosquitto-auth.conf: want listeners 1883 and 8883, found %d", seen)
	}
	conf = strings.NewReplacer("/etc/mosquitto/certs/", certs.Dir+"/", "/etc/mosquitto/", dir+"/").Replace(conf)
	if err := os.WriteFile(filepath.Join(dir, "acl"), []byte(acl), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.MosquittoPasswd(t, filepath.Join(dir, "passwd"), map[string]string{"cloudd": "cloud-pw", userA: passA, userB: passB})
	conf += "user root\nlog_dest stdout\nlog_type error\nlog_type warning\nlog_type notice\n"
	b = testenv.MosquittoConf(t, dir, conf, plain)
	return b, fmt.Sprintf("tcp://127.0.0.1:%d", plain), fmt.Sprintf("ssl://127.0.0.1:%d", secure)
}

// TestMosquittoDocumentedACL runs the Mosquitto access control that
// docs/cloudd.md gives for production and repeats the attacks of security
// issue #10. Mosquitto drops an unauthorised MQTT 3.1.1 publish silently
// (PUBACK and all), so each check looks at what reached subscribers that
// may see it (cloudd, gateway B), after a positive control from the same
// connection arrived.
func TestMosquittoDocumentedACL(t *testing.T) {
	certs := testenv.NewCerts(t)
	mq, plainURL, tlsURL := mosquittoFromDocs(t, certs)
	defer func() {
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", mq.Output())
		}
	}()

	// cloudd subscribes with exactly the filters of ingest and the command
	// API, with and without a shared-subscription group.
	cloudC := mustDial(t, plainURL, "cloudd", "cloud-pw", "cloudd")
	cloud := &recorder{}
	filters := append(ingest.Subscriptions(""), command.ReplyFilter, command.StatusFilter)
	for _, f := range filters {
		if q := subscribe(t, cloudC, f, cloud); q != 1 {
			t.Errorf("cloudd subscribing to %s: granted %#x, want 1", f, q)
		}
	}
	shared := &recorder{}
	sharedC := mustDial(t, plainURL, "cloudd", "cloud-pw", "cloudd-shared")
	for _, f := range ingest.Subscriptions("cloudd") {
		if q := subscribe(t, sharedC, f, shared); q != 1 {
			t.Errorf("cloudd subscribing to %s: granted %#x, want 1", f, q)
		}
	}
	cmdB := watch(t, plainURL, userB, passB, "gw-b", baseB+"/cmd/#")

	t.Run("authentication", func(t *testing.T) {
		for _, c := range []struct{ name, url, user, pass string }{
			{"anonymous", plainURL, "", ""},
			{"wrong password", plainURL, userA, passB},
			{"unknown user", plainURL, "s1/gw-c", passA},
			{"wrong password over TLS", tlsURL, userA, passB},
		} {
			o := clientOpts(c.url, c.user, c.pass, "probe").SetTLSConfig(certs.ClientTLS(t))
			if _, err := dial(t, o); err == nil {
				t.Errorf("%s: connected", c.name)
			}
		}
		if _, err := dial(t, clientOpts(strings.Replace(tlsURL, "ssl:", "tcp:", 1), userA, passA, "gw-a-plain")); err == nil {
			t.Error("plain MQTT connection to the TLS listener accepted")
		}
	})

	t.Run("publish and retain", func(t *testing.T) {
		a, err := dial(t, clientOpts(tlsURL, userA, passA, "gw-a").SetTLSConfig(certs.ClientTLS(t)))
		if err != nil {
			t.Fatalf("gateway A over TLS: %v", err)
		}
		for _, m := range []struct {
			topic  string
			retain bool
		}{
			{baseB + "/telemetry", false}, {baseB + "/events", false}, {baseB + "/status", true},
			{baseB + "/cmd/evil", false}, {baseB + "/cmd-reply/1", false}, {baseA + "/cmd/x", false},
		} {
			publish(t, a, m.topic, "forged", m.retain)
		}
		publish(t, a, baseA+"/status", `{"online":true}`, true)
		publish(t, a, baseA+"/telemetry", "own", false)
		waitFor(t, "A's own telemetry at cloudd", func() bool { return cloud.has(baseA+"/telemetry", "own") })
		waitFor(t, "A's own telemetry at cloudd's shared subscription", func() bool { return shared.has(baseA+"/telemetry", "own") })
		if !cloud.has(baseA+"/status", `{"online":true}`) {
			t.Error("A's own status did not reach cloudd")
		}
		if got := cloud.under(baseA + "/cmd"); len(got) > 0 {
			t.Errorf("A wrote a command: %+v", got)
		}
		// Retained messages: B's status first, then A's, on one connection;
		// Mosquitto answers the subscriptions in order, so A's retained
		// status arriving means B's would have arrived before it.
		late := &recorder{}
		c := mustDial(t, plainURL, "cloudd", "cloud-pw", "cloudd-late")
		subscribe(t, c, baseB+"/status", late)
		subscribe(t, c, baseA+"/status", late)
		waitFor(t, "A's retained status", func() bool { return late.has(baseA+"/status", `{"online":true}`) })
		if got := late.under(baseB); len(got) > 0 {
			t.Errorf("retained on B's status: %+v", got)
		}
	})

	t.Run("will", func(t *testing.T) {
		for _, w := range []will{
			{baseB + "/cmd/evil", `{"action":"open"}`, false},
			{baseB + "/telemetry", "forged", false},
			{baseB + "/status", `{"online":false}`, true},
		} {
			// Mosquitto 2.0 accepts the CONNECT and drops the will when it
			// would publish it; either way nothing may arrive.
			conn, _ := rawConnect(t, plainURL, userA, passA, "gw-a-will", &w)
			conn.Close()
		}
		conn, rc := rawConnect(t, plainURL, userA, passA, "gw-a-will", &will{baseA + "/status", `{"online":false}`, true})
		if rc != 0 {
			t.Fatalf("own status will: CONNACK %d", rc)
		}
		conn.Close()
		waitFor(t, "A's own will at cloudd", func() bool { return cloud.has(baseA+"/status", `{"online":false}`) })
	})

	t.Run("subscribe", func(t *testing.T) {
		a := mustDial(t, plainURL, userA, passA, "gw-a-sub")
		got := &recorder{}
		for _, f := range []string{baseB + "/cmd/#", "gw/v1/+/+/cmd/#", "#"} {
			subscribe(t, a, f, got) // Mosquitto may grant it; what counts is that nothing arrives
		}
		if q := subscribe(t, a, baseA+"/cmd/#", got); q != 1 {
			t.Fatalf("A subscribing to its own commands: granted %#x", q)
		}
		publish(t, cloudC, baseB+"/cmd/1", "for B", false)
		publish(t, cloudC, baseA+"/cmd/2", "for A", false)
		waitFor(t, "B's command at B", func() bool { return cmdB.has(baseB+"/cmd/1", "for B") })
		waitFor(t, "A's command at A", func() bool { return got.has(baseA+"/cmd/2", "for A") })
		if m := got.under(baseB); len(m) > 0 {
			t.Errorf("A received B's commands: %+v", m)
		}
	})

	t.Run("delivery topics", func(t *testing.T) {
		// A gateway reads only its own acknowledgements and announces
		// drops only under its own root; cloudd publishes acks and reads
		// the announcements.
		a := mustDial(t, plainURL, userA, passA, "gw-a-ack")
		got := &recorder{}
		subscribe(t, a, baseB+"/ack", got) // Mosquitto may grant it; nothing may arrive
		if q := subscribe(t, a, baseA+"/ack", got); q != 1 {
			t.Fatalf("A subscribing to its own ack topic: granted %#x", q)
		}
		publish(t, cloudC, baseB+"/ack", "ack for B", false)
		publish(t, cloudC, baseA+"/ack", "ack for A", false)
		waitFor(t, "A's ack at A", func() bool { return got.has(baseA+"/ack", "ack for A") })
		publish(t, a, baseB+"/dropped", "forged", false)
		publish(t, a, baseA+"/dropped", "A dropped", false)
		waitFor(t, "A's announcement at cloudd", func() bool { return cloud.has(baseA+"/dropped", "A dropped") })
		if m := got.under(baseB); len(m) > 0 {
			t.Errorf("A received B's acks: %+v", m)
		}
		if m := cloud.under(baseB + "/dropped"); len(m) > 0 {
			t.Errorf("A announced drops for B: %+v", m)
		}
	})

	t.Run("client id", func(t *testing.T) {
		// Gateways connect over TLS, where the client id is the username:
		// A using B's or cloudd's client id pushes neither off.
		tlsB, err := dial(t, clientOpts(tlsURL, userB, passB, "luling-s1-gw-b").SetTLSConfig(certs.ClientTLS(t)))
		if err != nil {
			t.Fatalf("B over TLS: %v", err)
		}
		for _, id := range []string{"luling-s1-gw-b", "cloudd"} {
			if _, err := dial(t, clientOpts(tlsURL, userA, passA, id).SetTLSConfig(certs.ClientTLS(t)).SetCleanSession(false)); err != nil {
				t.Fatalf("A with client id %s: %v", id, err)
			}
		}
		// A barrier: a round trip on cloudd's connection after A's connects.
		publish(t, cloudC, baseB+"/cmd/takeover", "for B", false)
		waitFor(t, "command at B", func() bool { return cmdB.has(baseB+"/cmd/takeover", "for B") })
		if !tlsB.IsConnected() || !cloudC.IsConnected() {
			t.Errorf("taken over: B connected %v, cloudd connected %v", tlsB.IsConnected(), cloudC.IsConnected())
		}
	})

	// Nothing of A's reached B's topics, by any path.
	for name, r := range map[string]*recorder{"cloudd": cloud, "cloudd (shared)": shared, "gateway B": cmdB} {
		for _, m := range r.under(baseB + "/") {
			if m.payload != "for B" {
				t.Errorf("%s received %+v", name, m)
			}
		}
	}
}

// TestMosquittoHash: Mosquitto accepts the password hashes testenv writes
// when mosquitto_passwd is missing.
func TestMosquittoHash(t *testing.T) {
	dir := t.TempDir()
	h, err := testenv.MosquittoHash(passA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(userA+":"+h+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	testenv.MosquittoConf(t, dir, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s/passwd\nuser root\n", port, dir), port)
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	mustDial(t, url, userA, passA, "gw-a")
	if _, err := dial(t, clientOpts(url, userA, passB, "gw-a-wrong")); err == nil {
		t.Error("wrong password accepted")
	}
}
