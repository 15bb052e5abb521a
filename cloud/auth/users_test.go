package auth_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/cloud/auth"
	"github.com/luling-edge/luling/internal/clock"
)

func newUsers(t *testing.T) *auth.UserFile {
	return &auth.UserFile{Path: filepath.Join(t.TempDir(), "users.json"), Cost: bcrypt.MinCost}
}

func TestUserFile(t *testing.T) {
	f := newUsers(t)
	if err := f.Add("alice", auth.Operator, "correct horse"); err != nil {
		t.Fatal(err)
	}
	if err := f.Add("alice", auth.Viewer, "another one"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("second alice: %v, want exists", err)
	}
	if err := f.Add("bob", auth.Viewer, "short"); err == nil || !strings.Contains(err.Error(), "want 8 to 72") {
		t.Errorf("short password: %v", err)
	}
	if err := f.Add("bad name!", auth.Viewer, "long enough"); err == nil {
		t.Error("bad name accepted")
	}
	if err := f.Add("carol", auth.RoleNone, "long enough"); err == nil {
		t.Error("no role accepted")
	}
	b, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "correct horse") {
		t.Fatal("the file holds the password")
	}
	if fi, _ := os.Stat(f.Path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	list, err := f.List()
	if err != nil || len(list) != 1 || list[0].Name != "alice" || list[0].Role != "operator" {
		t.Fatalf("list %+v %v", list, err)
	}
	if bcrypt.CompareHashAndPassword([]byte(list[0].Bcrypt), []byte("correct horse")) != nil {
		t.Error("stored hash does not match the password")
	}
	if err := f.SetPassword("alice", "battery staple"); err != nil {
		t.Fatal(err)
	}
	list, _ = f.List()
	if bcrypt.CompareHashAndPassword([]byte(list[0].Bcrypt), []byte("battery staple")) != nil {
		t.Error("passwd did not change the hash")
	}
	if err := f.SetPassword("nobody", "long enough"); !errors.Is(err, auth.ErrNoSuchUser) {
		t.Errorf("passwd of nobody: %v", err)
	}
	if err := f.Remove("alice"); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove("alice"); !errors.Is(err, auth.ErrNoSuchUser) {
		t.Errorf("second remove: %v", err)
	}
	if list, _ := f.List(); len(list) != 0 {
		t.Errorf("after remove: %+v", list)
	}
}

// login posts a login through Sessions.Login and returns the cookie.
func login(t *testing.T, s *auth.Sessions, remote, name, pw string) (*http.Cookie, auth.Principal, error) {
	t.Helper()
	r := httptest.NewRequest("POST", "/login", nil)
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	p, err := s.Login(w, r, name, pw)
	if err != nil {
		return nil, p, err
	}
	cs := w.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("login set %d cookies", len(cs))
	}
	return cs[0], p, nil
}

func withCookie(method, target string, c *http.Cookie) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if c != nil {
		r.AddCookie(c)
	}
	return r
}

func TestSessions(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	f := newUsers(t)
	if err := f.Add("alice", auth.Operator, "correct horse"); err != nil {
		t.Fatal(err)
	}
	if err := f.Add("vic", auth.Viewer, "viewer pass"); err != nil {
		t.Fatal(err)
	}
	s := auth.NewSessions(auth.SessionOptions{Users: f.Path, TTL: time.Hour, Now: clk.Now})
	if _, err := s.Authenticate(withCookie("GET", "/", nil)); !errors.Is(err, auth.ErrNoCredentials) {
		t.Errorf("no cookie: %v, want ErrNoCredentials", err)
	}
	if _, _, err := login(t, s, "10.0.0.1:5000", "alice", "wrong password"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("wrong password: %v", err)
	}
	if _, _, err := login(t, s, "10.0.0.1:5000", "mallory", "correct horse"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("unknown user: %v", err)
	}
	c, p, err := login(t, s, "10.0.0.1:5000", "alice", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Name != auth.SessionCookie || len(c.Value) < 40 || c.MaxAge != 3600 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, a long random value, max-age 1h", c)
	}
	if p.Role != auth.Operator || p.CSRF == "" || p.CSRF == c.Value {
		t.Errorf("principal %+v", p)
	}
	got, err := s.Authenticate(withCookie("GET", "/", c))
	if err != nil || got.Name != "alice" || got.Role != auth.Operator || got.CSRF != p.CSRF {
		t.Fatalf("GET with the cookie: %+v %v", got, err)
	}
	// A state-changing request needs the CSRF token, as header or form field.
	if _, err := s.Authenticate(withCookie("POST", "/act", c)); !errors.Is(err, auth.ErrBadCredentials) || !strings.Contains(err.Error(), "CSRF") {
		t.Errorf("POST without CSRF: %v", err)
	}
	r := withCookie("POST", "/act", c)
	wrong := "x"
	if p.CSRF[0] == 'x' { // a wrong token must differ from the right one
		wrong = "y"
	}
	r.Header.Set(auth.CSRFHeader, wrong+p.CSRF[1:])
	if _, err := s.Authenticate(r); err == nil {
		t.Error("POST with a wrong CSRF token accepted")
	}
	r.Header.Set(auth.CSRFHeader, p.CSRF)
	if _, err := s.Authenticate(r); err != nil {
		t.Errorf("POST with the CSRF header: %v", err)
	}
	r = httptest.NewRequest("POST", "/act", strings.NewReader(url.Values{auth.CSRFField: {p.CSRF}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(c)
	if _, err := s.Authenticate(r); err != nil {
		t.Errorf("POST with the CSRF form field: %v", err)
	}
	// Another session's token does not do.
	c2, p2, err := login(t, s, "10.0.0.2:5000", "vic", "viewer pass")
	if err != nil {
		t.Fatal(err)
	}
	r = withCookie("POST", "/act", c2)
	r.Header.Set(auth.CSRFHeader, p.CSRF)
	if _, err := s.Authenticate(r); err == nil {
		t.Error("vic's session took alice's CSRF token")
	}
	// Through the guard: vic reads but may not act.
	h := api(s)
	for _, tc := range []struct {
		method string
		c      *http.Cookie
		csrf   string
		want   int
	}{
		{"GET", nil, "", 401}, {"GET", c2, "", 200}, {"POST", c2, p2.CSRF, 403}, {"POST", c, p.CSRF, 200}, {"POST", c, "", 401},
	} {
		r := withCookie(tc.method, map[string]string{"GET": "/read", "POST": "/act"}[tc.method], tc.c)
		if tc.csrf != "" {
			r.Header.Set(auth.CSRFHeader, tc.csrf)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s with %v: HTTP %d, want %d", tc.method, tc.c != nil, w.Code, tc.want)
		}
	}
	// A role change in the file applies to the open session.
	if err := f.Remove("vic"); err != nil {
		t.Fatal(err)
	}
	if err := f.Add("vic", auth.Operator, "viewer pass"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if got, err := s.Authenticate(withCookie("GET", "/", c2)); err != nil || got.Role != auth.Operator {
		t.Errorf("after the role change: %+v %v", got, err)
	}
	// Logout ends the session.
	w := httptest.NewRecorder()
	s.Logout(w, withCookie("POST", "/logout", c2))
	if _, err := s.Authenticate(withCookie("GET", "/", c2)); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("after logout: %v", err)
	}
	if cs := w.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Errorf("logout cookies %+v: want the cookie cleared", cs)
	}
	// A removed account's session ends.
	if err := f.Remove("alice"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if _, err := s.Authenticate(withCookie("GET", "/", c)); err == nil || !strings.Contains(err.Error(), "no longer exists") {
		t.Errorf("removed account: %v", err)
	}
}

func TestSessionExpiry(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	f := newUsers(t)
	if err := f.Add("alice", auth.Viewer, "correct horse"); err != nil {
		t.Fatal(err)
	}
	s := auth.NewSessions(auth.SessionOptions{Users: f.Path, TTL: time.Hour, Now: clk.Now})
	c, _, err := login(t, s, "10.0.0.1:1", "alice", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(59 * time.Minute)
	if _, err := s.Authenticate(withCookie("GET", "/", c)); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	clk.Advance(time.Minute)
	if _, err := s.Authenticate(withCookie("GET", "/", c)); !errors.Is(err, auth.ErrBadCredentials) {
		t.Errorf("at expiry: %v, want refused", err)
	}
}

func TestLoginRateLimit(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	f := newUsers(t)
	for _, n := range []string{"alice", "bob"} {
		if err := f.Add(n, auth.Viewer, "correct horse"); err != nil {
			t.Fatal(err)
		}
	}
	s := auth.NewSessions(auth.SessionOptions{Users: f.Path, MaxFailures: 3, FailWindow: time.Minute, Now: clk.Now})
	for i := 0; i < 3; i++ {
		if _, _, err := login(t, s, "10.0.0.1:1", "alice", "guess"); !errors.Is(err, auth.ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	// Locked for alice, even with the right password and from elsewhere.
	if _, _, err := login(t, s, "10.0.0.9:1", "alice", "correct horse"); !errors.Is(err, auth.ErrRateLimited) {
		t.Errorf("after 3 failures: %v, want rate limited", err)
	}
	// bob is not locked by alice's failures.
	if _, _, err := login(t, s, "10.0.0.9:1", "bob", "correct horse"); err != nil {
		t.Errorf("bob: %v", err)
	}
	// One address guessing many names is locked after 4× as many.
	for i := 0; i < 12; i++ {
		login(t, s, "10.0.0.66:1", "user"+string(rune('a'+i)), "guess")
	}
	if _, _, err := login(t, s, "10.0.0.66:1", "bob", "correct horse"); !errors.Is(err, auth.ErrRateLimited) {
		t.Errorf("address after 12 failures: %v, want rate limited", err)
	}
	clk.Advance(time.Minute)
	if _, _, err := login(t, s, "10.0.0.1:1", "alice", "correct horse"); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

func TestEither(t *testing.T) {
	f := newUsers(t)
	if err := f.Add("alice", auth.Viewer, "correct horse"); err != nil {
		t.Fatal(err)
	}
	s := auth.NewSessions(auth.SessionOptions{Users: f.Path})
	tf := newFile(t)
	tok := create(t, tf, "grafana", auth.Viewer)
	h := api(auth.Either(auth.NewTokenAuthenticator(tf.Path, auth.TokenOptions{}), s))
	c, _, err := login(t, s, "10.0.0.1:1", "alice", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := do(t, h, "GET", "/read", "Bearer "+tok); code != 200 || body != "grafana:viewer" {
		t.Errorf("token: %d %s", code, body)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, withCookie("GET", "/read", c))
	if w.Code != 200 || w.Body.String() != "alice:viewer" {
		t.Errorf("session: %d %s", w.Code, w.Body)
	}
	if code, _, _ := do(t, h, "GET", "/read", ""); code != 401 {
		t.Errorf("nothing: %d", code)
	}
	if code, _, _ := do(t, h, "GET", "/read", "Bearer luling_nope"); code != 401 {
		t.Errorf("bad token: %d", code)
	}
}

func FuzzUserFile(f *testing.F) {
	h, _ := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	f.Add([]byte(`{"version": 1, "users": [{"name": "alice", "role": "operator", "bcrypt": "` + string(h) + `", "created": "2026-12-04T12:00:00Z"}]}`))
	f.Add([]byte(`{"version": 1, "users": []}`))
	f.Add([]byte(`{"version": 1, "users": [{"name": "a", "role": "viewer", "bcrypt": "plain"}]}`))
	f.Add([]byte(`{"version": 2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		infos, n, err := auth.ParseUserFile("users.json", b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "user file users.json: ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if n != len(infos) {
			t.Fatalf("%d infos, %d users", len(infos), n)
		}
		out, _ := json.Marshal(map[string]any{"version": 1, "users": infos})
		if again, _, err := auth.ParseUserFile("users.json", out); err != nil || len(again) != len(infos) {
			t.Fatalf("round trip: %d users, %v", len(again), err)
		}
	})
}
