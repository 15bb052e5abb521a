package auth_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/auth"
	"github.com/luling-edge/luling/internal/clock"
)

// api is a small API behind the guard: GET /read needs a viewer, POST
// /act an operator; both answer with the principal's name.
func api(a auth.Authenticator) http.Handler {
	g := auth.NewGuard(a, "cloudd", nil)
	who := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := auth.FromContext(r.Context())
		if !ok {
			http.Error(w, "no principal in context", 500)
			return
		}
		fmt.Fprintf(w, "%s:%s", p.Name, p.Role)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /read", g.Require(auth.Viewer)(who))
	mux.Handle("POST /act", g.Require(auth.Operator)(who))
	return mux
}

func do(t *testing.T, h http.Handler, method, path, authz string) (int, string, http.Header) {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.String(), w.Header()
}

func newFile(t *testing.T) *auth.TokenFile {
	return &auth.TokenFile{Path: filepath.Join(t.TempDir(), "tokens.json")}
}

func create(t *testing.T, f *auth.TokenFile, name string, role auth.Role) string {
	t.Helper()
	tok, err := f.Create(name, role)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRequire(t *testing.T) {
	f := newFile(t)
	op := create(t, f, "ops", auth.Operator)
	view := create(t, f, "grafana", auth.Viewer)
	gone := create(t, f, "old", auth.Operator)
	if err := f.Revoke("old"); err != nil {
		t.Fatal(err)
	}
	h := api(auth.NewTokenAuthenticator(f.Path, auth.TokenOptions{}))
	for _, c := range []struct {
		name, method, path, authz string
		code                      int
		body, challenge           string
	}{
		{"missing token", "GET", "/read", "", 401, "authentication required", `Bearer realm="cloudd"`},
		{"missing token on a command", "POST", "/act", "", 401, "authentication required", `Bearer realm="cloudd"`},
		{"wrong token", "GET", "/read", "Bearer " + op + "x", 401, "unknown or revoked token", `error="invalid_token"`},
		{"revoked token", "POST", "/act", "Bearer " + gone, 401, "unknown or revoked token", `error="invalid_token"`},
		{"other scheme", "GET", "/read", "Basic b3BzOnB3", 401, "want Bearer", `error="invalid_token"`},
		{"viewer sends a command", "POST", "/act", "Bearer " + view, 403, `needs role operator; \"grafana\" has role viewer`, `insufficient_scope`},
		{"viewer reads", "GET", "/read", "Bearer " + view, 200, "grafana:viewer", ""},
		{"operator reads", "GET", "/read", "Bearer " + op, 200, "ops:operator", ""},
		{"operator sends a command", "POST", "/act", "bearer " + op, 200, "ops:operator", ""},
	} {
		code, body, hdr := do(t, h, c.method, c.path, c.authz)
		if code != c.code || !strings.Contains(body, c.body) {
			t.Errorf("%s: HTTP %d %q, want %d with %q", c.name, code, body, c.code, c.body)
		}
		if got := hdr.Get("WWW-Authenticate"); !strings.Contains(got, c.challenge) || (c.challenge == "") != (got == "") {
			t.Errorf("%s: WWW-Authenticate %q, want %q", c.name, got, c.challenge)
		}
		if strings.Contains(body, op) || strings.Contains(body, view) {
			t.Errorf("%s: a token is echoed in the body %q", c.name, body)
		}
	}
}

func TestTokenFileHashedAndPrivate(t *testing.T) {
	f := newFile(t)
	tok := create(t, f, "ops", auth.Operator)
	if !strings.HasPrefix(tok, auth.TokenPrefix) || len(tok) != len(auth.TokenPrefix)+43 {
		t.Errorf("token %q: want %s and 43 base64url characters (256 bits)", tok, auth.TokenPrefix)
	}
	if other := create(t, f, "ops2", auth.Operator); other == tok {
		t.Error("two tokens are equal")
	}
	fi, err := os.Stat(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(f.Path)
	secret := strings.TrimPrefix(tok, auth.TokenPrefix)
	if strings.Contains(string(b), secret) || strings.Contains(string(b), secret[:16]) {
		t.Errorf("token file holds the token:\n%s", b)
	}
	sum := sha256.Sum256([]byte(tok))
	if !strings.Contains(string(b), hex.EncodeToString(sum[:])) {
		t.Errorf("token file lacks the token's SHA-256:\n%s", b)
	}
	// A file made group-readable by hand gets 0600 back with the next change.
	os.Chmod(f.Path, 0o644)
	if err := f.Revoke("ops2"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(f.Path); fi.Mode().Perm() != 0o600 {
		t.Errorf("after revoke: mode %v, want 0600", fi.Mode().Perm())
	}
	list, err := f.List()
	if err != nil || len(list) != 1 || list[0].Name != "ops" || list[0].Role != "operator" || list[0].Created.IsZero() {
		t.Errorf("List = %+v, %v", list, err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(f.Path), ".tokens.json.tmp-*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestCreateRevokeErrors(t *testing.T) {
	f := newFile(t)
	create(t, f, "ops", auth.Operator)
	if _, err := f.Create("ops", auth.Viewer); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("duplicate name: %v", err)
	}
	if _, err := f.Create("no spaces", auth.Viewer); err == nil || !strings.Contains(err.Error(), `"no spaces"`) {
		t.Errorf("bad name: %v", err)
	}
	if _, err := f.Create("x", auth.RoleNone); err == nil {
		t.Error("no role: no error")
	}
	if err := f.Revoke("nobody"); !errors.Is(err, auth.ErrNoSuchToken) {
		t.Errorf("revoke unknown: %v", err)
	}
	missing := &auth.TokenFile{Path: filepath.Join(t.TempDir(), "none.json")}
	if l, err := missing.List(); err != nil || len(l) != 0 {
		t.Errorf("missing file: %v %v", l, err)
	}
	if err := missing.Revoke("x"); !errors.Is(err, auth.ErrNoSuchToken) {
		t.Errorf("revoke in a missing file: %v", err)
	}
}

// TestReloadWithoutRestart: tokens created and revoked after the
// authenticator started take effect once the check interval passed.
func TestReloadWithoutRestart(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	f := newFile(t)
	a := auth.NewTokenAuthenticator(f.Path, auth.TokenOptions{Now: clk.Now})
	h := api(a)
	tok := create(t, f, "ops", auth.Operator)
	if code, _, _ := do(t, h, "POST", "/act", "Bearer "+tok); code != 401 {
		t.Errorf("before the check interval: HTTP %d, want 401 (the file is looked at once per second at most)", code)
	}
	clk.Advance(time.Second)
	if code, body, _ := do(t, h, "POST", "/act", "Bearer "+tok); code != 200 {
		t.Errorf("after creating: HTTP %d %s, want 200", code, body)
	}
	if err := f.Revoke("ops"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if code, _, _ := do(t, h, "POST", "/act", "Bearer "+tok); code != 401 {
		t.Errorf("after revoking: HTTP %d, want 401", code)
	}
	// Removing the file revokes everything.
	tok2 := create(t, f, "ops2", auth.Operator)
	clk.Advance(time.Second)
	if code, _, _ := do(t, h, "GET", "/read", "Bearer "+tok2); code != 200 {
		t.Fatalf("second token: HTTP %d", code)
	}
	os.Remove(f.Path)
	clk.Advance(time.Second)
	if code, body, _ := do(t, h, "GET", "/read", "Bearer "+tok2); code != 401 || !strings.Contains(body, "no usable API tokens") {
		t.Errorf("file removed: HTTP %d %s, want 401", code, body)
	}
}

// TestNoTokenFileRefusesAll: without a file, or with a broken one, the API
// is closed, not open.
func TestNoTokenFileRefusesAll(t *testing.T) {
	for _, path := range []string{"", filepath.Join(t.TempDir(), "missing.json")} {
		a := auth.NewTokenAuthenticator(path, auth.TokenOptions{})
		if n, err := a.Count(); n != 0 || err == nil {
			t.Errorf("%q: Count = %d, %v; want 0 and the reason", path, n, err)
		}
		code, body, _ := do(t, api(a), "GET", "/read", "Bearer "+auth.TokenPrefix+"whatever")
		if code != 401 || !strings.Contains(body, "no usable API tokens") {
			t.Errorf("%q: HTTP %d %s, want 401", path, code, body)
		}
	}
	f := newFile(t)
	tok := create(t, f, "ops", auth.Operator)
	clk := clock.NewFake(time.Now())
	a := auth.NewTokenAuthenticator(f.Path, auth.TokenOptions{Now: clk.Now})
	if code, _, _ := do(t, api(a), "GET", "/read", "Bearer "+tok); code != 200 {
		t.Fatalf("valid file: HTTP %d", code)
	}
	os.WriteFile(f.Path, []byte(`{"version": 1, "tokens": [{"name": "ops", "role": "admin", "sha256": "`+strings.Repeat("0", 64)+`"}]}`), 0o600)
	clk.Advance(time.Second)
	code, body, _ := do(t, api(a), "GET", "/read", "Bearer "+tok)
	if code != 401 || strings.Contains(body, f.Path) {
		t.Errorf("broken file: HTTP %d %s, want 401 without the file's name", code, body)
	}
	if _, err := a.Count(); err == nil || !strings.Contains(err.Error(), f.Path) || !strings.Contains(err.Error(), `role "admin"`) {
		t.Errorf("broken file: Count error %v, want the file and the problem", err)
	}
}

// TestConcurrentCreate: changes from two processes at once are applied
// one after the other (the lock), none lost.
func TestConcurrentCreate(t *testing.T) {
	f := newFile(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			other := &auth.TokenFile{Path: f.Path}
			for i := range 5 {
				if _, err := other.Create(fmt.Sprintf("t%d-%d", g, i), auth.Viewer); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if l, err := f.List(); err != nil || len(l) != 20 {
		t.Errorf("List: %d tokens, %v; want 20", len(l), err)
	}
}

func TestParseErrors(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	for _, c := range []struct{ body, want string }{
		{`[]`, "want {\"version\": 1"},
		{`{"version": 2, "tokens": []}`, "version 2: want 1"},
		{`{"version": 1, "tokens": [], "extra": 1}`, `unknown field "extra"`},
		{`{"version": 1, "tokens": []} {}`, "data after"},
		{`{"version": 1, "tokens": [{"name": "", "role": "viewer", "sha256": "` + hash + `"}]}`, `tokens[0]: token name ""`},
		{`{"version": 1, "tokens": [{"name": "a", "role": "root", "sha256": "` + hash + `"}]}`, `tokens[0] (a): role "root": want viewer or operator`},
		{`{"version": 1, "tokens": [{"name": "a", "role": "viewer", "sha256": "abc"}]}`, `tokens[0] (a): sha256 "abc": want 64 hex digits`},
		{`{"version": 1, "tokens": [{"name": "a", "role": "viewer", "sha256": "` + hash + `"}, {"name": "a", "role": "viewer", "sha256": "` + hash + `"}]}`, `tokens[1]: name "a" appears twice`},
	} {
		f := newFile(t)
		os.WriteFile(f.Path, []byte(c.body), 0o600)
		_, err := f.List()
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), f.Path) {
			t.Errorf("%s: err %v, want the file and %q", c.body, err, c.want)
		}
	}
}

func TestRoles(t *testing.T) {
	for _, s := range []string{"viewer", "operator"} {
		r, err := auth.ParseRole(s)
		if err != nil || r.String() != s {
			t.Errorf("ParseRole(%q) = %v, %v", s, r, err)
		}
	}
	if _, err := auth.ParseRole("admin"); err == nil {
		t.Error("admin parsed")
	}
	if !auth.Operator.Allows(auth.Viewer) || auth.Viewer.Allows(auth.Operator) || auth.RoleNone.Allows(auth.RoleNone) || auth.Operator.Allows(auth.RoleNone) {
		t.Error("role order wrong")
	}
}

func FuzzTokenFile(f *testing.F) {
	f.Add([]byte(`{"version": 1, "tokens": [{"name": "ops", "role": "operator", "sha256": "` + strings.Repeat("0f", 32) + `", "created": "2026-12-04T12:00:00Z"}]}`))
	f.Add([]byte(`{"version": 1, "tokens": []}`))
	f.Add([]byte(`{"version": 1, "tokens": [{"name": "a", "role": "viewer", "sha256": "zz"}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		infos, n, err := auth.ParseTokenFile("tokens.json", b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "token file tokens.json: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if n != len(infos) {
			t.Fatalf("%d infos, %d entries", len(infos), n)
		}
		// What parses survives the round trip cloudd token makes of it.
		out, err := json.Marshal(map[string]any{"version": 1, "tokens": infos})
		if err != nil {
			t.Fatal(err)
		}
		again, _, err := auth.ParseTokenFile("tokens.json", out)
		if err != nil || len(again) != len(infos) {
			t.Fatalf("round trip: %d tokens, %v (want %d)", len(again), err, len(infos))
		}
	})
}

// TestWritableFileWarned: a token file that others may write is loaded, and
// the log says that anyone who can write it can make themselves operator.
func TestWritableFileWarned(t *testing.T) {
	f := newFile(t)
	create(t, f, "ops", auth.Operator)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	auth.NewTokenAuthenticator(f.Path, auth.TokenOptions{Logger: log})
	if strings.Contains(logs.String(), "writable") {
		t.Errorf("0600 file warned about:\n%s", logs.String())
	}
	os.Chmod(f.Path, 0o666)
	a := auth.NewTokenAuthenticator(f.Path, auth.TokenOptions{Logger: log})
	if n, _ := a.Count(); n != 1 || !strings.Contains(logs.String(), "writable by others") || !strings.Contains(logs.String(), "chmod 600") {
		t.Errorf("0666 file: %d tokens, log:\n%s", n, logs.String())
	}
}
