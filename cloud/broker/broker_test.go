package broker

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/payload"
)

func TestAllowed(t *testing.T) {
	cases := []struct {
		user, topic string
		write, want bool
	}{
		{"s1/gw-a", "gw/v1/s1/gw-a/telemetry", true, true},
		{"s1/gw-a", "gw/v1/s1/gw-a/events", true, true},
		{"s1/gw-a", "gw/v1/s1/gw-a/status", true, true},
		{"s1/gw-a", "gw/v1/s1/gw-a/cmd-reply/42", true, true},
		{"s1/gw-a", "gw/v1/s1/gw-b/telemetry", true, false},
		{"s1/gw-a", "gw/v1/s2/gw-a/telemetry", true, false},
		{"s1/gw-a", "gw/v1/s1/gw-a/cmd/42", true, false},
		{"s1/gw-a", "gw/v1/s1/gw-a/cmd-reply/", true, false},
		{"s1/gw-a", "gw/v1/s1/gw-a/cmd-reply/1/2", true, false},
		{"s1/gw-a", "gw/v1/s1/gw-a/telemetry/x", true, false},
		{"s1/gw-a", "gw/v1/s1/gw-a/#", true, false},
		{"s1/gw-a", "gw/v1/s1/gw-a/cmd/#", false, true},
		{"s1/gw-a", "gw/v1/s1/gw-a/cmd/42", false, true},
		{"s1/gw-a", "gw/v1/s1/gw-a/#", false, false},
		{"s1/gw-a", "gw/v1/s1/+/cmd/#", false, false},
		{"s1/gw-a", "gw/v1/s1/gw-b/cmd/#", false, false},
		{"s1/gw-a", "$share/g/gw/v1/s1/gw-a/cmd/#", false, false},
		{"s1/gw-a", "gw/v1/s1/gw-a/telemetry", false, false},
		{"s1/gw-a", "gw/v1/s1/gw-a/ack", false, true},
		{"s1/gw-a", "gw/v1/s1/gw-a/ack", true, false},
		{"s1/gw-a", "gw/v1/s1/gw-b/ack", false, false},
		{"s1/gw-a", "gw/v1/s1/+/ack", false, false},
		{"s1/gw-a", "gw/v1/s1/gw-a/ack/#", false, false},
		{"s1/gw-a", "gw/v1/s1/gw-a/dropped", true, true},
		{"s1/gw-a", "gw/v1/s1/gw-b/dropped", true, false},
		{"s1/gw-a", "gw/v1/s1/gw-a/dropped", false, false},
		{"gw-a", "gw/v1/s1/gw-a/telemetry", true, false},
		{"s1/GW", "gw/v1/s1/GW/telemetry", true, false},
		{"", "gw/v1/s1/gw-a/telemetry", true, false},
	}
	for _, c := range cases {
		if got := Allowed(c.user, c.topic, c.write); got != c.want {
			t.Errorf("Allowed(%q, %q, write=%v) = %v, want %v", c.user, c.topic, c.write, got, c.want)
		}
	}
}

func TestParseCredentials(t *testing.T) {
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	good := "gateways:\n  - site: s1\n    gateway: gw-a\n    password: " + string(h) + "\n"
	creds, err := ParseCredentials("creds.yaml", []byte(good))
	if err != nil || bcrypt.CompareHashAndPassword(creds["s1/gw-a"], []byte("pw")) != nil {
		t.Fatalf("good file: %v %v", creds, err)
	}
	for name, c := range map[string]struct{ text, want string }{
		"plain password": {"gateways:\n  - {site: s1, gateway: gw-a, password: secret}\n", "gateways[0] (s1/gw-a): password: want a bcrypt hash"},
		"bad id":         {"gateways:\n  - {site: S1, gateway: gw-a, password: x}\n", `gateways[0]: site "S1"`},
		"unknown key":    {"gateway:\n  - {site: s1}\n", "creds.yaml"},
		"duplicate":      {strings.Repeat("", 0) + "gateways:\n  - {site: s1, gateway: gw-a, password: '" + string(h) + "'}\n  - {site: s1, gateway: gw-a, password: '" + string(h) + "'}\n", "s1/gw-a listed twice"},
	} {
		_, err := ParseCredentials("creds.yaml", []byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to contain %q", name, err, c.want)
		}
	}
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword([]byte("s3cret"))
	if err != nil || bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret")) != nil {
		t.Fatalf("HashPassword: %q %v", h, err)
	}
	if _, err := HashPassword(nil); err == nil {
		t.Error("empty password accepted")
	}
}

func FuzzParseCredentials(f *testing.F) {
	f.Add([]byte("gateways:\n  - {site: s1, gateway: gw-a, password: '$2a$04$abcdefghijklmnopqrstuuJ2p4yQp1oW8o3zV0c9YdXa6qzN8R4K.'}\n"))
	f.Add([]byte("gateways: [}"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		creds, err := ParseCredentials("fuzz.yaml", data)
		if err != nil {
			if !strings.Contains(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for user := range creds {
			site, gw, ok := strings.Cut(user, "/")
			if !ok || !Allowed(user, "gw/v1/"+site+"/"+gw+"/telemetry", true) {
				t.Fatalf("accepted user %q cannot publish its own telemetry", user)
			}
		}
	})
}

// FuzzACL: whatever user and topic, a topic the ACL lets a gateway write
// parses as that gateway's own (never a command), a filter it may
// subscribe to stays under its own cmd/, and it may retain only its
// status.
func FuzzACL(f *testing.F) {
	f.Add("s1/gw-a", "gw/v1/s1/gw-a/telemetry")
	f.Add("s1/gw-a", "gw/v1/s1/gw-a/cmd-reply/7")
	f.Add("s1/gw-a", "gw/v1/s1/gw-a/cmd/#")
	f.Add("s1/gw-a", "gw/v1/s1/gw-a/status")
	f.Add("s1/gw-a/x", "gw/v1/s1/gw-a/x/status")
	f.Add("s1/gw-a", "gw/v1/s1/gw-b/cmd/1")
	f.Fuzz(func(t *testing.T, user, topic string) {
		site, gw, _ := strings.Cut(user, "/")
		if Allowed(user, topic, true) {
			p, err := payload.ParseTopic(topic)
			if err != nil || p.Site != site || p.Gateway != gw || p.Suffix == payload.SuffixCmd {
				t.Fatalf("%q may publish %q: parsed %+v, %v", user, topic, p, err)
			}
		}
		if Allowed(user, topic, false) && !strings.HasPrefix(topic, payload.Base(site, gw)+"/"+payload.SuffixCmd+"/") &&
			topic != payload.AckTopic(site, gw) {
			t.Fatalf("%q may subscribe to %q", user, topic)
		}
		if RetainAllowed(user, topic) && (topic != payload.StatusTopic(site, gw) || !Allowed(user, topic, true)) {
			t.Fatalf("%q may retain on %q", user, topic)
		}
	})
}
