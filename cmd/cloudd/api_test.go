package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luling-edge/luling/internal/testenv"
)

// newToken runs `cloudd token create` and returns the token it printed;
// an empty file leaves the file to LULING_CLOUD_TOKENS.
func newToken(t *testing.T, file, name, role string) string {
	t.Helper()
	args := []string{"token", "create", "-name", name, "-role", role}
	if file != "" {
		args = append(args, "-tokens", file)
	}
	var out bytes.Buffer
	if err := run(context.Background(), args, nil, &out, io.Discard); err != nil {
		t.Fatalf("token create %s: %v", name, err)
	}
	return strings.TrimSpace(out.String())
}

// startCloudd runs cloudd with its embedded broker and the HTTP API on a
// free port, with args added, until the test ends; it returns the API's
// base URL once /healthz answers, and cloudd's log.
func startCloudd(t *testing.T, args ...string) (string, *syncBuf) {
	t.Helper()
	api, logs, _, _ := startCloudDB(t, args...)
	return api, logs
}

// startCloudDB is startCloudd that also returns cloudd's InfluxDB and
// database.
func startCloudDB(t *testing.T, args ...string) (string, *syncBuf, *testenv.Influx, string) {
	t.Helper()
	influx, db := testenv.NewDatabase(t)
	mqttPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := new(syncBuf)
	args = append([]string{"-broker-listen", "127.0.0.1:" + itoa(mqttPort), "-influx-url", influx.URL, "-influx-bucket", db,
		"-http", "127.0.0.1:" + itoa(httpPort), "-client-id", "cloudd-" + db}, args...)
	go func() { done <- run(ctx, args, nil, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	api := "http://127.0.0.1:" + itoa(httpPort)
	wait(t, "healthy", func() bool {
		resp, err := http.Get(api + "/healthz")
		ok := err == nil && resp.StatusCode == 200
		closeBody(resp)
		return ok
	})
	return api, logs, influx, db
}

// call sends an API request with token (none when empty) and returns the
// status code and body.
func call(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("%s %s: 401 without WWW-Authenticate: Bearer", method, url)
	}
	return resp.StatusCode, string(b)
}

// TestAPIAuth: the running daemon refuses missing, wrong and revoked
// tokens (401) and a viewer's command (403); a viewer reads the fleet and
// /metrics, an operator's command reaches the command service; tokens
// created and revoked while it runs take effect without a restart.
func TestAPIAuth(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	view := newToken(t, file, "grafana", "viewer")
	op := newToken(t, file, "platform", "operator")
	api, logs := startCloudd(t, "-tokens", file)
	cmd := api + "/api/v1/gateways/s1/gw-1/commands"
	const body = `{"name": "device.write", "args": {"device": "bay-1", "point": "led", "value": "red"}, "timeout": "1s"}`

	for _, c := range []struct {
		what, method, url, token, body string
		code                           int
	}{
		{"health without a token", "GET", api + "/healthz", "", "", 200},
		{"fleet without a token", "GET", api + "/api/v1/gateways", "", "", 401},
		{"metrics without a token", "GET", api + "/metrics", "", "", 401},
		{"command without a token", "POST", cmd, "", body, 401},
		{"command with a wrong token", "POST", cmd, op + "x", body, 401},
		{"command from a viewer", "POST", cmd, view, body, 403},
		{"fleet for a viewer", "GET", api + "/api/v1/gateways", view, "", 200},
		{"metrics for a viewer", "GET", api + "/metrics", view, "", 200},
		{"reply lookup for a viewer", "GET", cmd + "/c-1", view, "", 404},
		// Authorized: the command service answers, here that the gateway is unknown.
		{"command from an operator", "POST", cmd, op, body, 404},
	} {
		code, b := call(t, c.method, c.url, c.token, c.body)
		if code != c.code {
			t.Errorf("%s: HTTP %d %s, want %d", c.what, code, b, c.code)
		}
		if c.what == "command from an operator" && !strings.Contains(b, "gw-1") {
			t.Errorf("%s: body %s is not the command service's answer", c.what, b)
		}
	}
	if !strings.Contains(logs.String(), "principal=platform") {
		t.Errorf("the operator's request is not logged with its token name:\n%s", logs.String())
	}

	late := newToken(t, file, "late", "viewer")
	wait(t, "token created while running is accepted", func() bool {
		code, _ := call(t, "GET", api+"/api/v1/gateways", late, "")
		return code == 200
	})
	if err := run(context.Background(), []string{"token", "revoke", "-tokens", file, "platform"}, nil, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	wait(t, "revoked token is refused", func() bool {
		code, _ := call(t, "POST", cmd, op, body)
		return code == 401
	})
}

// TestAPIWithoutTokenFile: started without -tokens, cloudd does not serve
// an open API and says how to create a token.
func TestAPIWithoutTokenFile(t *testing.T) {
	t.Setenv("LULING_CLOUD_TOKENS", "")
	api, logs := startCloudd(t)
	for _, u := range []string{"/api/v1/gateways", "/metrics"} {
		if code, b := call(t, "GET", api+u, auth0, ""); code != 401 {
			t.Errorf("GET %s: HTTP %d %s, want 401", u, code, b)
		}
	}
	if code, b := call(t, "POST", api+"/api/v1/gateways/s1/gw-1/commands", auth0, `{"name":"device.write"}`); code != 401 {
		t.Errorf("command: HTTP %d %s, want 401", code, b)
	}
	if !strings.Contains(logs.String(), "cloudd token create -tokens FILE") {
		t.Errorf("the log does not say how to create a token:\n%s", logs.String())
	}
}

// auth0 is a well-formed token that no file holds.
const auth0 = "luling_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

func TestTokenCommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens.json")
	tok := newToken(t, file, "alice", "operator")
	t.Setenv("LULING_CLOUD_TOKENS", file) // the env fallback
	newToken(t, "", "bob", "viewer")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "list"}, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "alice") || !strings.Contains(s, "operator") || !strings.Contains(s, "bob") || strings.Contains(s, tok) {
		t.Errorf("list:\n%s", s)
	}
	if err := run(context.Background(), []string{"token", "revoke", "alice"}, nil, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	run(context.Background(), []string{"token", "list"}, nil, &out, io.Discard)
	if strings.Contains(out.String(), "alice") {
		t.Errorf("revoked token still listed:\n%s", out.String())
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file: %v %v, want mode 0600", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(file); strings.Contains(string(b), strings.TrimPrefix(tok, "luling_")) {
		t.Error("token file holds a token")
	}
	if err := run(context.Background(), []string{"token", "revoke", "alice"}, nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "no such token") {
		t.Errorf("revoke twice: %v", err)
	}
	for _, args := range [][]string{
		{"token"},
		{"token", "rotate"},
		{"token", "create", "-name", "x"},
		{"token", "create", "-name", "x", "-role", "admin"},
		{"token", "create", "-role", "viewer"},
		{"token", "revoke"},
		{"token", "list", "extra"},
	} {
		var ue *usageError
		if err := run(context.Background(), args, nil, io.Discard, io.Discard); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	t.Setenv("LULING_CLOUD_TOKENS", "")
	var ue *usageError
	if err := run(context.Background(), []string{"token", "list"}, nil, io.Discard, io.Discard); !errors.As(err, &ue) || !strings.Contains(ue.msg, "-tokens") {
		t.Errorf("no file: %v", err)
	}
}
