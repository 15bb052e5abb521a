package web

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/luling-edge/luling/internal/testenv"
)

// TestAccessSearchInBrowser types into the access view's search in headless
// Chromium: the log narrows to the matching events as the user types, with
// no page load. With LULING_SCREENSHOTS=DIR it saves the access, solar
// and gateway views for the docs. The gateway view's health then updates in place
// from its live feed. (The whole system in a browser is internal/e2e's
// TestPlatformInBrowser.)
func TestAccessSearchInBrowser(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("LULING_REQUIRE_SERVICES") != "" {
			t.Fatal("chromium not found: apt-get install chromium, or make services")
		}
		t.Skip("chromium not found (apt-get install chromium, or make services); skipping")
	}
	p := newPlatform(t)
	accessSolarData(p)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 760), chromedp.Flag("disable-quic", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	do("log in", chromedp.Navigate(p.http.URL+"/login"), chromedp.SendKeys(chromedp.CSS("#name"), "view"),
		chromedp.SendKeys(chromedp.CSS("#password"), "password-1"), chromedp.Click(chromedp.CSS("#login")), chromedp.WaitVisible(chromedp.CSS("#who")))
	do("access view", chromedp.Navigate(p.http.URL+"/access"), chromedp.WaitVisible(chromedp.CSS("#access-log tr.granted")),
		chromedp.Poll[chromedp.Void](`document.querySelector("form.search")?.["htmx-internal-data"]?.initHash !== undefined`))
	shot := func(name string) {
		dir := os.Getenv("LULING_SCREENSHOTS")
		if dir == "" {
			return
		}
		if root, err := testenv.RepoRoot(); err == nil && !filepath.IsAbs(dir) {
			dir = filepath.Join(root, dir)
		}
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	shot("access")
	do("search 6666", chromedp.SendKeys(chromedp.CSS(`input[name=q]`), "6666"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#access-log tr.ev").length === 1 && document.querySelector("#access-log tr.ev.denied") !== null`))
	loc, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil || loc != p.http.URL+"/access" {
		t.Errorf("the search left the page for %s (%v): want it narrowed in place", loc, err)
	}
	do("solar view", chromedp.Navigate(p.http.URL+"/solar"), chromedp.WaitVisible(chromedp.CSS("#plot canvas")))
	shot("solar")
	// The gateway view's health follows a new gateway_health point with no
	// page load (htmx's SSE extension swaps the fragment in).
	gatewayData(p)
	do("gateway view", chromedp.Navigate(p.http.URL+"/gateways/north/gw-1"),
		chromedp.Poll[chromedp.Void](`document.querySelector("#bus-util")?.textContent === "73 %"`))
	p.write(fmt.Sprintf("gateway_health,site=north,gateway=gw-1 uplink_connected=true,outbox_bytes=0i,outbox_unacked=0i,outbox_dropped=7i,bus_errors=9i,bus_utilization=0.25,devices_ok=3i,devices_failed=0i,rss_bytes=1i,goroutines=31i %d", time.Now().UnixMilli()))
	do("live gateway health", chromedp.Poll[chromedp.Void](`document.querySelector("#bus-util")?.textContent === "25 %" && document.querySelector("#uplink")?.textContent === "up"`))
	if loc, err := chromedp.Run(bctx, chromedp.Location()); err != nil || loc != p.http.URL+"/gateways/north/gw-1" {
		t.Errorf("the gateway view left for %s (%v): want it updated in place", loc, err)
	}
	shot("gateway-health")
}
