package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/testenv"
)

// chromium finds the browser from the OS packages: skipped without it,
// unless LULING_REQUIRE_SERVICES is set (make test), where its absence
// fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const how = "apt-get install chromium, or make services"
	if os.Getenv("LULING_REQUIRE_SERVICES") != "" {
		t.Fatalf("chromium not found: %s", how)
	}
	t.Skipf("chromium not found (%s); skipping", how)
	return ""
}

// browser starts headless Chromium with a fresh profile and returns a
// context for chromedp actions.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 760),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs chromedp steps with a generous limit: a hung browser fails the
// test instead of hanging it.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	get(t, ctx, what, chromedp.Steps(steps...))
}

// get runs one chromedp action and returns its value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// visible waits for the element that the CSS selector sel finds to show.
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// until waits for a JavaScript expression to hold.
func until(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(25*time.Second))
}

// screenshot saves the viewport as NAME.png under $LULING_SCREENSHOTS,
// when that is set (the docs' pictures).
func screenshot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("LULING_SCREENSHOTS")
	if dir == "" {
		return
	}
	if root, err := testenv.RepoRoot(); err == nil && !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// addUser adds an account with cloudd user add.
func addUser(t *testing.T, file, name, role, password string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "cloudd"), "user", "add", "-users", file, "-name", name, "-role", role)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cloudd user add %s: %v\n%s", name, err, out)
	}
}

func login(t *testing.T, ctx context.Context, base, name, password string) {
	t.Helper()
	run(t, ctx, "log in as "+name,
		chromedp.Navigate(base+"/login"),
		visible("#login"),
		chromedp.SendKeys(chromedp.CSS("#name"), name),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#login")),
		visible("#who"),
	)
}

// wired is a JavaScript condition: htmx has processed the element.
func wired(sel string) string {
	return fmt.Sprintf(`document.querySelector(%q)?.["htmx-internal-data"]?.initHash !== undefined`, sel)
}

// freeInInflux is the sum of the newest free count of every lot zone.
func (w *world) freeInInflux() int {
	series, err := w.influx.Query(w.db, `SELECT last("free") FROM "parking_lot" GROUP BY *`)
	if err != nil {
		w.t.Fatal(err)
	}
	total := 0
	for _, s := range series {
		n, _ := s.Values[0][1].(json.Number).Int64()
		total += int(n)
	}
	return total
}

// TestPlatformInBrowser drives the web platform in a real browser against
// cloudd, InfluxDB, gatewayd and the simulated lot.
func TestPlatformInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	ctx := browser(t)
	users := filepath.Join(t.TempDir(), "users.json")
	addUser(t, users, "manager", "operator", "manager-pass")
	addUser(t, users, "viewer", "viewer", "viewer-pass")
	w := newWorld(t, worldOptions{bays: 8, buses: 2, poll: 200 * time.Millisecond, cloudArgs: []string{"-users", users}})
	w.waitInitial()
	testenv.WaitFor(t, 30*time.Second, "cloudd to see the gateway online", func() bool { return w.cloudStats().Online })
	testenv.WaitFor(t, 30*time.Second, "both zones in parking_lot", func() bool {
		s, err := w.influx.Query(w.db, `SELECT last("free") FROM "parking_lot" GROUP BY "zone"`)
		return err == nil && len(s) == 2
	})
	base := w.cloudAPI

	// Anonymous: the login page.
	run(t, ctx, "anonymous request", chromedp.Navigate(base+"/gateways/e2e/gw-1"), visible("#login"))
	loc := get(t, ctx, "location", chromedp.Location())
	if !strings.HasPrefix(loc, base+"/login?next=") {
		t.Errorf("anonymous request ended on %s, want the login page", loc)
	}
	screenshot(t, ctx, "login")

	// Area: the free-bay count is what InfluxDB holds.
	login(t, ctx, base, "manager", "manager-pass")
	want := w.freeInInflux()
	run(t, ctx, "area view", chromedp.Navigate(base+"/"),
		until(fmt.Sprintf(`document.querySelector("#free-total")?.textContent === "%d"`, want)))
	screenshot(t, ctx, "area")

	// Lot: a bay changed in the simulator shows within 2 s of reaching InfluxDB.
	run(t, ctx, "lot view", chromedp.Navigate(base+"/lots/e2e/l1"), visible("#bay-gw-1-bay-003"))
	run(t, ctx, "live feed connected", until(`document.querySelector("[sse-connect]")?.["htmx-internal-data"]?.sseEventSource?.readyState === 1`))
	occ, err := w.lot.Occupied(3)
	if err != nil {
		t.Fatal(err)
	}
	state := map[bool]string{true: "occupied", false: "free"}
	run(t, ctx, "bay 3 before", visible(fmt.Sprintf(`#bay-gw-1-bay-003[data-state=%q]`, state[occ])))
	inInflux := make(chan time.Time, 1)
	go func() { // when the new value reaches InfluxDB
		q := `SELECT last("occupied") FROM "parking_bay" WHERE "device" = 'bay-003'`
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if s, err := w.influx.Query(w.db, q); err == nil && len(s) == 1 && s[0].Values[0][1] == !occ {
				inInflux <- time.Now()
				return
			}
		}
	}()
	if err := w.lot.SetOccupied(3, !occ); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "bay 3 after", visible(fmt.Sprintf(`#bay-gw-1-bay-003[data-state=%q]`, state[!occ])))
	shown := time.Now()
	select {
	case at := <-inInflux:
		lag := shown.Sub(at)
		t.Logf("bay change shown %v after it reached InfluxDB", lag.Round(time.Millisecond))
		if lag > 2*time.Second {
			t.Errorf("bay change shown %v after it reached InfluxDB, want within 2 s", lag)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the bay change never reached InfluxDB, yet the page showed it")
	}
	screenshot(t, ctx, "lot")

	// Gateway: an operator's LED command reaches the simulated sensor and
	// its reply shows.
	if led, _ := w.lot.LED(1); led == modbussim.LEDRed {
		t.Fatal("bay 1's LED is red before the command")
	}
	run(t, ctx, "send the LED command",
		chromedp.Navigate(base+"/gateways/e2e/gw-1"),
		visible("#command-form"), until(wired("#command-form")),
		chromedp.SetValue(chromedp.CSS("#cmd-name"), "device.write"),
		chromedp.SendKeys(chromedp.CSS("#cmd-device"), "bay-001"),
		chromedp.SendKeys(chromedp.CSS("#cmd-point"), "led"),
		chromedp.SendKeys(chromedp.CSS("#cmd-value"), "red"),
		chromedp.Click(chromedp.CSS("#cmd-review")),
		visible("#confirm-send"),
	)
	if led, _ := w.lot.LED(1); led == modbussim.LEDRed {
		t.Fatal("the LED changed before the command was confirmed")
	}
	// htmx swapped the confirmation in; a person clicks after htmx wired it.
	run(t, ctx, "confirm the LED command", until(wired("#confirm form")), chromedp.Click(chromedp.CSS("#confirm-send")), visible("#command-result"))
	if loc := get(t, ctx, "location", chromedp.Location()); loc != base+"/gateways/e2e/gw-1" {
		t.Errorf("the command left the gateway page for %s: want the reply shown in place", loc)
	}
	status := get(t, ctx, "result status", chromedp.AttributeValue(chromedp.CSS("#command-result"), "data-status")).Value
	reply := get(t, ctx, "reply", chromedp.Text(chromedp.CSS("#command-reply")))
	if status != "ok" || !strings.Contains(reply, `"value": "red"`) {
		t.Errorf("command result %q, reply %s", status, reply)
	}
	if led, _ := w.lot.LED(1); led != modbussim.LEDRed {
		t.Errorf("LED register %d after the command, want red (%d)", led, modbussim.LEDRed)
	}
	screenshot(t, ctx, "gateway")

	// A viewer gets no command form, and the server refuses the command
	// even when the browser sends it with the viewer's CSRF token.
	run(t, ctx, "log out", chromedp.Click(chromedp.CSS(`header .who button`)), visible("#login"))
	login(t, ctx, base, "viewer", "viewer-pass")
	run(t, ctx, "viewer's gateway page", chromedp.Navigate(base+"/gateways/e2e/gw-1"), visible("#no-commands"))
	code := get(t, ctx, "viewer's command", chromedp.Evaluate[int](`fetch("/gateways/e2e/gw-1/command/send", {method: "POST",
		headers: {"Content-Type": "application/x-www-form-urlencoded"},
		body: "name=device.write&device=bay-001&point=led&value=green&csrf=" + encodeURIComponent(document.querySelector("input[name=csrf]").value)}).then(r => r.status)`,
		chromedp.EvalAwaitPromise))
	if code != 403 {
		t.Errorf("viewer's command: HTTP %d, want 403", code)
	}
	if led, _ := w.lot.LED(1); led != modbussim.LEDRed {
		t.Errorf("LED register %d after the viewer's attempt, want still red", led)
	}
}
