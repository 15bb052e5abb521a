package registry

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/internal/testenv"
)

func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestFileLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := &File{Path: path, Now: func() time.Time { return time.Date(2026, 12, 4, 16, 0, 0, 0, time.UTC) }}
	if gws, err := f.List(); err != nil || len(gws) != 0 {
		t.Fatalf("missing file: %v, %v", gws, err)
	}
	if _, err := f.Add("harbor", "gw-01"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Add("harbor", "gw-01"); !errors.Is(err, ErrExists) {
		t.Errorf("second add: %v, want ErrExists", err)
	}
	if _, err := f.Add("Harbor", "gw 1"); err == nil || !strings.Contains(err.Error(), "[a-z0-9-]{1,64}") {
		t.Errorf("bad ids: %v", err)
	}
	if _, err := f.Add("harbor", "gw-02"); err != nil {
		t.Fatal(err)
	}
	if err := f.SetPassword("harbor", "gw-01", hash(t, "pw")); err != nil {
		t.Fatal(err)
	}
	if err := f.SetPassword("harbor", "gw-01", "plain"); err == nil {
		t.Error("a password that is not a bcrypt hash was stored")
	}
	if err := f.AddCert("harbor", "gw-01", Cert{Serial: "1a2b"}); err != nil {
		t.Fatal(err)
	}
	if err := f.AddCert("harbor", "gw-02", Cert{Serial: "1a2b"}); err == nil {
		t.Error("one serial recorded for two gateways")
	}
	if err := f.AddCert("harbor", "gw-02", Cert{Serial: "01"}); err == nil {
		t.Error("serial with a leading zero accepted")
	}
	if err := f.RevokeCert("harbor", "gw-01", "ffff"); !errors.Is(err, ErrNoCert) {
		t.Errorf("revoke unknown serial: %v", err)
	}
	if err := f.RevokeCert("harbor", "gw-01", "1a2b"); err != nil {
		t.Fatal(err)
	}
	if err := f.SetEnabled("harbor", "gw-02", false); err != nil {
		t.Fatal(err)
	}
	if err := f.SetEnabled("harbor", "nope", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("disable unknown: %v", err)
	}
	g, err := f.Get("harbor", "gw-01")
	if err != nil {
		t.Fatal(err)
	}
	if g.ValidCert("1a2b") || g.Certs[0].Revoked == nil || !g.Enabled || g.PasswordHash == "" {
		t.Errorf("gw-01 = %+v", g)
	}
	if g2, _ := f.Get("harbor", "gw-02"); g2.Enabled {
		t.Error("gw-02 still enabled")
	}
	if err := f.Remove("harbor", "gw-02"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Get("harbor", "gw-02"); !errors.Is(err, ErrNotFound) {
		t.Errorf("removed gateway: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("registry file mode: %v %v", fi.Mode(), err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`{"version": 2, "gateways": []}`, "version 2: want 1"},
		{`{"version": 1, "gateways": [{"site": "a", "id": "B"}]}`, "gateways[0]: site \"a\", gateway \"B\""},
		{`{"version": 1, "gateways": [{"site": "a", "id": "b"}, {"site": "a", "id": "b"}]}`, "gateways[1]: a/b listed twice"},
		{`{"version": 1, "gateways": [{"site": "a", "id": "b", "password_hash": "x"}]}`, "password_hash: want a bcrypt hash"},
		{`{"version": 1, "gateways": [{"site": "a", "id": "b", "certificates": [{"serial": "XY"}]}]}`, "certificates[0]: serial \"XY\""},
		{`{"version": 1, "gateways": [{"site": "a", "id": "b", "colour": 1}]}`, "unknown field \"colour\""},
		{`{"version": 1, "gateways": []} {}`, "data after the JSON object"},
	} {
		_, err := Parse("reg.json", []byte(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "registry reg.json") {
			t.Errorf("%s: err = %v, want it to name the file and contain %q", c.body, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version": 1, "gateways": [{"site": "a", "id": "b", "enabled": true, "certificates": [{"serial": "1f"}]}]}`))
	f.Add([]byte(`{"version": 1, "gateways": []}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		gws, err := Parse("fuzz", b)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, g := range gws {
			if CheckID(g.Site, g.ID) != nil || seen[g.User()] {
				t.Fatalf("accepted %+v", g)
			}
			seen[g.User()] = true
		}
	})
}

// TestLiveFollowsTheFile: changes made through File (as by the CLI, in
// another process) reach a Live view under Run without a reload call, and
// a broken file fails closed.
func TestLiveFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := &File{Path: path}
	l := NewLive(path, LiveOptions{CheckEvery: 10 * time.Millisecond})
	var changes atomic.Int32
	l.OnChange(func() { changes.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Run(ctx)

	if _, ok := l.PasswordHash("s/gw"); ok {
		t.Fatal("unknown gateway has a password")
	}
	if _, err := f.Add("s", "gw"); err != nil {
		t.Fatal(err)
	}
	h := hash(t, "pw")
	if err := f.SetPassword("s", "gw", h); err != nil {
		t.Fatal(err)
	}
	if err := f.AddCert("s", "gw", Cert{Serial: "abc"}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "password and certificate seen", func() bool {
		got, ok := l.PasswordHash("s/gw")
		return ok && string(got) == h && l.CertAllowed("s/gw", "abc")
	})
	if l.CertAllowed("s/other", "abc") || l.CertAllowed("s/gw", "abd") {
		t.Error("certificate allowed for the wrong gateway or serial")
	}
	if err := f.RevokeCert("s", "gw", "abc"); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "revocation seen", func() bool { return !l.CertAllowed("s/gw", "abc") })
	if err := f.SetEnabled("s", "gw", false); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "disable seen", func() bool { _, ok := l.PasswordHash("s/gw"); return !ok })
	if changes.Load() < 3 {
		t.Errorf("OnChange ran %d times, want one per change", changes.Load())
	}
	if err := os.WriteFile(path, []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "broken file fails closed", func() bool { return l.Len() == 0 })
}

// TestLiveLooksBeforeRefusing: a gateway added to the file a moment ago
// is admitted at once, without Run or Reload.
func TestLiveLooksBeforeRefusing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateways.json")
	f := &File{Path: path}
	l := NewLive(path, LiveOptions{CheckEvery: time.Hour})
	if _, err := f.Add("s", "gw"); err != nil {
		t.Fatal(err)
	}
	if err := f.AddCert("s", "gw", Cert{Serial: "abc"}); err != nil {
		t.Fatal(err)
	}
	if !l.CertAllowed("s/gw", "abc") {
		t.Error("certificate recorded a moment ago refused")
	}
	if err := f.SetPassword("s", "gw", hash(t, "pw")); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.PasswordHash("s/gw"); !ok {
		t.Error("password set a moment ago refused")
	}
	if l.CertAllowed("s/gw", "abd") {
		t.Error("unknown serial allowed")
	}
}
