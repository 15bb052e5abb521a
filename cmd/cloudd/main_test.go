package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopShared()
	os.Exit(code)
}

func TestBadFlagsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"-batch-points", "0"},
		{"-influx-writes", "0"},
		{"-influx-writes", "65"},
		{"-influx-writes", "two"},
		{"-seq-grace", "soon"},
		{"-queue-time", "0s"},
		{"-queue-time", "a while"},
		{"-queue-time", "20s"}, // more than a quarter of the default -seq-grace
		{"-log-level", "loud"},
		{"-broker-url", "localhost:1883"},
		{"-influx-url", "localhost:8086"},
		{"-tls-cert", "c.pem"},
		{"-group", "a/b"},
		{"-seq-max-jump", "0"},
		{"-seq-max-jump", "1099511627777"},
		{"-allow-measurements", "ok,bad name"},
		{"-allow-measurements", "*,x"},
		{"-no-such-flag"},
		{"extra"},
	} {
		var stderr bytes.Buffer
		err := run(context.Background(), args, strings.NewReader(""), io.Discard, &stderr)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: err = %v, want a usage error (exit 2)", args, err)
			continue
		}
		if args[0] != "-no-such-flag" && !strings.Contains(ue.msg, args[0]) {
			t.Errorf("%v: message %q does not name the flag", args, ue.msg)
		}
	}
}

func TestEnvFallback(t *testing.T) {
	t.Setenv("LULING_CLOUD_GROUP", "")
	t.Setenv("LULING_CLOUD_INFLUX_BUCKET", "city")
	t.Setenv("LULING_CLOUD_BATCH_POINTS", "200")
	t.Setenv("LULING_CLOUD_INFLUX_WRITES", "4")
	c, err := parseFlags([]string{"-broker-url", "tcp://b:1883"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.group != "" || c.influxBucket != "city" || c.batchPoints != 200 || c.influxWrites != 4 || c.brokerURL != "tcp://b:1883" {
		t.Errorf("config = %+v", c)
	}
	c, err = parseFlags([]string{"-influx-bucket", "flagwins"}, io.Discard)
	if err != nil || c.influxBucket != "flagwins" {
		t.Errorf("flag should override env: %+v %v", c, err)
	}
	if c.trust.seqMaxJump != 1<<20 || c.trust.measurements != nil {
		t.Errorf("defaults: %+v", c.trust)
	}
	t.Setenv("LULING_CLOUD_SEQ_MAX_JUMP", "5000")
	t.Setenv("LULING_CLOUD_ALLOW_MEASUREMENTS", "rule_note, relay")
	if c, err = parseFlags(nil, io.Discard); err != nil || c.trust.seqMaxJump != 5000 || strings.Join(c.trust.measurements, "|") != "rule_note|relay" {
		t.Errorf("env: %+v %v", c.trust, err)
	}
	if c, err = parseFlags([]string{"-seq-max-jump", "70", "-allow-measurements", "*"}, io.Discard); err != nil || c.trust.seqMaxJump != 70 || strings.Join(c.trust.measurements, "|") != "*" {
		t.Errorf("flags over env: %+v %v", c.trust, err)
	}
}

func TestHashPasswordCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"hash-password"}, strings.NewReader("s3cret\n"), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(out.String())), []byte("s3cret")); err != nil {
		t.Errorf("printed %q: %v", out.String(), err)
	}
	var ue *usageError
	if err := run(context.Background(), []string{"hash-password"}, strings.NewReader(""), io.Discard, io.Discard); !errors.As(err, &ue) {
		t.Errorf("empty stdin: %v", err)
	}
}

// TestRunEmbedded runs the whole daemon with its embedded broker: a
// gateway from the credentials file publishes, the point lands in
// InfluxDB and the API shows the gateway.
func TestRunEmbedded(t *testing.T) {
	influx, db := testenv.NewDatabase(t)
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	creds := filepath.Join(t.TempDir(), "creds.yaml")
	os.WriteFile(creds, []byte("gateways:\n  - {site: s1, gateway: gw-1, password: '"+string(h)+"'}\n"), 0o600)
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	view := newToken(t, tokens, "test", "viewer")
	users := filepath.Join(t.TempDir(), "users.json")
	if err := run(context.Background(), []string{"user", "add", "-users", users, "-name", "pm", "-role", "viewer"}, strings.NewReader("password-1\n"), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	mqttPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs syncBuf
	go func() {
		done <- run(ctx, []string{"-broker-listen", "127.0.0.1:" + itoa(mqttPort), "-credentials", creds,
			"-influx-url", influx.URL, "-influx-bucket", db, "-http", "127.0.0.1:" + itoa(httpPort), "-client-id", "cloudd-test", "-tokens", tokens, "-users", users},
			nil, io.Discard, &logs)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	api := "http://127.0.0.1:" + itoa(httpPort)
	wait(t, "healthy", func() bool {
		resp, err := http.Get(api + "/healthz")
		ok := err == nil && resp.StatusCode == 200
		closeBody(resp)
		return ok
	})
	body := `{"v":1,"site":"s1","gateway":"gw-1","seq":1,"kind":"telemetry","records":[{"m":"pv","t":"` +
		time.Now().UTC().Add(-time.Minute).Format(time.RFC3339Nano) + `","tags":{"device":"inv-1"},"fields":{"ac_power_w":12.5}}]}`
	if err := publish("127.0.0.1:"+itoa(mqttPort), "s1/gw-1", "pw", "gw/v1/s1/gw-1/telemetry", body); err != nil {
		t.Fatal(err)
	}
	wait(t, "point written", func() bool {
		s, err := influx.Query(db, "SELECT * FROM pv")
		return err == nil && len(s) == 1 && len(s[0].Values) == 1
	})
	// The fleet counts the write after InfluxDB confirmed it: wait for it.
	wait(t, "api shows the write", func() bool {
		code, b := call(t, "GET", api+"/api/v1/gateways/s1/gw-1", view, "")
		return code == 200 && strings.Contains(b, `"points_written": 1`)
	})
	checkPlatform(t, api, view)
}

// checkPlatform: the web platform answers beside the API; the API takes a
// token or a session; an open live feed does not hold up the shutdown.
func checkPlatform(t *testing.T, api, token string) {
	t.Helper()
	noFollow := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := (&http.Client{CheckRedirect: noFollow}).Get(api + "/")
	if err != nil {
		t.Fatal(err)
	}
	closeBody(resp)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("anonymous GET /: HTTP %d to %q, want the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
	code, b := call(t, "GET", api+"/api/v1/sites", token, "")
	if code != 200 || !strings.Contains(b, `"name": "s1"`) || !strings.Contains(b, `"pv_power_w": 12.5`) {
		t.Errorf("GET /api/v1/sites with a token: HTTP %d %s", code, b)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: noFollow}
	resp, err = c.PostForm(api+"/login", url.Values{"name": {"pm"}, "password": {"password-1"}})
	if err != nil {
		t.Fatal(err)
	}
	closeBody(resp)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: HTTP %d", resp.StatusCode)
	}
	resp, err = c.Get(api + "/api/v1/sites")
	if err != nil {
		t.Fatal(err)
	}
	closeBody(resp)
	if resp.StatusCode != 200 {
		t.Errorf("GET /api/v1/sites with a session: HTTP %d", resp.StatusCode)
	}
	// A viewer's session may not send commands through the API either.
	req, _ := http.NewRequest("POST", api+"/api/v1/gateways/s1/gw-1/commands", strings.NewReader(`{"name":"ping"}`))
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	closeBody(resp)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST command with a session and no CSRF token: HTTP %d, want 401", resp.StatusCode)
	}
	live, err := c.Get(api + "/live/area")
	if err != nil {
		t.Fatal(err)
	}
	if live.StatusCode != 200 {
		t.Fatalf("live: HTTP %d", live.StatusCode)
	}
	t.Cleanup(func() { live.Body.Close() })
}

func TestVersion(t *testing.T) {
	for _, arg := range []string{"-version", "--version"} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{arg}, strings.NewReader(""), &out, &errb); err != nil || out.String() != "cloudd "+version+"\n" {
			t.Errorf("%s: stdout %q, stderr %q, %v", arg, out.String(), errb.String(), err)
		}
	}
}

// TestLogFormat: -log-format json (or LULING_CLOUD_LOG_FORMAT) makes every
// line a JSON object; text stays the default.
func TestLogFormat(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		env    string
		prefix string
	}{
		{nil, "", "time="},
		{[]string{"-log-format", "json"}, "", `{"time":`},
		{nil, "json", `{"time":`},
		{[]string{"-log-format", "text"}, "json", "time="},
	} {
		if tc.env != "" {
			t.Setenv("LULING_CLOUD_LOG_FORMAT", tc.env)
		}
		c, err := parseFlags(tc.args, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		var out bytes.Buffer
		c.logger(&out).Info("hello", "k", "v")
		if !strings.HasPrefix(out.String(), tc.prefix) {
			t.Errorf("%v (env %q): %q, want it to start %q", tc.args, tc.env, out.String(), tc.prefix)
		}
	}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-log-format", "xml"}, strings.NewReader(""), io.Discard, &stderr)
	var ue *usageError
	if !errors.As(err, &ue) || !strings.Contains(ue.msg, "-log-format") {
		t.Errorf("-log-format xml: %v, want a usage error naming the flag", err)
	}
}
