package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/cloud/auth"
	"github.com/luling-edge/luling/cloud/command"
	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.StopShared()
	os.Exit(code)
}

// platform is the web platform on a real InfluxDB database, with a fleet
// fed the way ingest feeds it and two accounts: op (operator) and view
// (viewer), password "password-1".
type platform struct {
	t      *testing.T
	influx *testenv.Influx
	db     string
	fleet  *fleet.Fleet
	srv    *Server
	http   *httptest.Server
}

func newPlatform(t *testing.T) *platform {
	t.Helper()
	if testing.Short() {
		t.Skip("needs InfluxDB")
	}
	in, db := testenv.NewDatabase(t)
	users := &auth.UserFile{Path: filepath.Join(t.TempDir(), "users.json"), Cost: bcrypt.MinCost}
	for _, u := range []struct {
		name string
		role auth.Role
	}{{"op", auth.Operator}, {"view", auth.Viewer}} {
		if err := users.Add(u.name, u.role, "password-1"); err != nil {
			t.Fatal(err)
		}
	}
	p := &platform{t: t, influx: in, db: db, fleet: fleet.New(time.Minute, nil)}
	var err error
	p.srv, err = New(Config{
		Influx: &Influx{URL: in.URL, DB: db}, Fleet: p.fleet,
		Sessions: auth.NewSessions(auth.SessionOptions{Users: users.Path}),
		Refresh:  100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.http = httptest.NewServer(p.srv.Handler())
	t.Cleanup(func() {
		p.srv.Close()
		p.http.Close()
	})
	return p
}

// write writes line protocol (ms precision) to the database.
func (p *platform) write(lines ...string) {
	p.t.Helper()
	resp, err := http.Post(p.influx.URL+"/write?precision=ms&db="+p.db, "text/plain", strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		p.t.Fatalf("write: HTTP %d %s", resp.StatusCode, b)
	}
}

// client returns an HTTP client that keeps cookies and does not follow
// redirects, logged in as name when name is not empty.
func (p *platform) client(name string) *http.Client {
	p.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if name == "" {
		return c
	}
	resp, err := c.PostForm(p.http.URL+"/login", url.Values{"name": {name}, "password": {"password-1"}, "next": {"/gateways"}})
	if err != nil {
		p.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/gateways" {
		p.t.Fatalf("login %s: HTTP %d to %q", name, resp.StatusCode, resp.Header.Get("Location"))
	}
	return c
}

func (p *platform) get(c *http.Client, path string) (int, string, http.Header) {
	p.t.Helper()
	resp, err := c.Get(p.http.URL + path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// csrf is the CSRF token a page carries.
func csrf(t *testing.T, page string) string {
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

var idText = func(id string) *regexp.Regexp {
	return regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `">([^<]*)<`)
}

func textOf(t *testing.T, page, id string) string {
	t.Helper()
	m := idText(id).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no element #%s in the page:\n%s", id, page)
	}
	return m[1]
}

func (p *platform) online(site, gw string, devices ...payload.DeviceInfo) {
	p.fleet.Status(&payload.Status{V: 1, Site: site, Gateway: gw, Online: true, Version: "test", Time: time.Now(), Devices: devices})
}

func TestAnonymousGetsLogin(t *testing.T) {
	p := newPlatform(t)
	c := p.client("")
	for path, want := range map[string]string{"/": "/login", "/lots/a/b": "/login?next=%2Flots%2Fa%2Fb", "/gateways": "/login?next=%2Fgateways", "/live/area": "/login"} {
		code, _, h := p.get(c, path)
		if code != http.StatusSeeOther || h.Get("Location") != want {
			t.Errorf("GET %s: HTTP %d to %q, want 303 to %s", path, code, h.Get("Location"), want)
		}
	}
	code, body, h := p.get(c, "/login")
	if code != 200 || !strings.Contains(body, `type="password"`) || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("login page: HTTP %d, CSP %q", code, h.Get("Content-Security-Policy"))
	}
	resp, err := c.PostForm(p.http.URL+"/login", url.Values{"name": {"op"}, "password": {"wrong-password"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b), "wrong password") {
		t.Errorf("wrong password: HTTP %d", resp.StatusCode)
	}
	// The vendored libraries are served with their licences.
	for _, path := range []string{"/static/vendor/htmx/htmx.min.js", "/static/vendor/htmx/LICENSE", "/static/vendor/uplot/uPlot.iife.min.js", "/static/vendor/uplot/LICENSE", "/static/vendor/htmx-ext-sse/sse.min.js", "/static/app.js"} {
		if code, _, _ := p.get(c, path); code != 200 {
			t.Errorf("GET %s: HTTP %d", path, code)
		}
	}
	// Another site's page cannot post the login form (login CSRF).
	req, _ := http.NewRequest("POST", p.http.URL+"/login", strings.NewReader(url.Values{"name": {"op"}, "password": {"password-1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("cross-site login: HTTP %d, cookies %v; want 403 and none", resp.StatusCode, resp.Cookies())
	}
	// A next= that leaves the site is ignored.
	resp, err = p.client("").PostForm(p.http.URL+"/login", url.Values{"name": {"op"}, "password": {"password-1"}, "next": {"//evil.example/"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Location") != "/" {
		t.Errorf("login with an off-site next: to %q, want /", resp.Header.Get("Location"))
	}
}

// lotPoints are two lots of two sites; lot l1 has two zones, one of which
// two gateways report.
func lotPoints(now time.Time) []string {
	ms := now.UnixMilli()
	return []string{
		fmt.Sprintf("parking_lot,site=north,gateway=gw-1,lot=l1,zone=z1 capacity=10i,occupied=7i,free=3i,in_total=true %d", ms-60_000),
		fmt.Sprintf("parking_lot,site=north,gateway=gw-1,lot=l1,zone=z1 capacity=10i,occupied=6i,free=4i,in_total=true %d", ms-1000),
		fmt.Sprintf("parking_lot,site=north,gateway=gw-1,lot=l1,zone=z2 capacity=5i,occupied=5i,free=0i,in_total=true %d", ms-1000),
		fmt.Sprintf("parking_lot,site=north,gateway=gw-2,lot=l1,zone=z2 capacity=5i,occupied=1i,free=4i,in_total=true %d", ms-1000),
		fmt.Sprintf("parking_lot,site=south,gateway=gw-9,lot=s1,zone=a capacity=20i,occupied=2i,free=18i,in_total=true %d", ms-1000),
		fmt.Sprintf("alert,site=north,gateway=gw-1,rule=r,severity=critical,device=d message=\"door forced\" %d", ms-1000),
		fmt.Sprintf("alert,site=north,gateway=gw-1,rule=r,severity=warning,device=d message=\"x\" %d", ms-2000),
		fmt.Sprintf("access,site=north,gateway=gw-1,door=front,reader=r1,result=granted credential=\"1\",reason=\"ok\",latency_ms=20 %d", ms-1000),
		fmt.Sprintf("access,site=north,gateway=gw-1,door=front,reader=r1,result=denied credential=\"2\",reason=\"unknown card\",latency_ms=15 %d", ms-2000),
		fmt.Sprintf("pv,site=south,gateway=gw-9,device=inv-1,model=103 ac_power_w=2500,ac_energy_wh=1000 %d", ms-1000),
	}
}

func TestAreaMatchesInfluxDB(t *testing.T) {
	p := newPlatform(t)
	p.write(lotPoints(time.Now())...)
	p.online("north", "gw-1")
	p.online("north", "gw-2")
	p.fleet.Status(&payload.Status{V: 1, Site: "south", Gateway: "gw-9", Online: false, Time: time.Now()})
	c := p.client("view")
	code, body, _ := p.get(c, "/")
	if code != 200 {
		t.Fatalf("area: HTTP %d\n%s", code, body)
	}
	// What InfluxDB holds, asked independently: the newest free per series.
	series, err := p.influx.Query(p.db, `SELECT last("free") FROM "parking_lot" GROUP BY *`)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, s := range series {
		n, _ := s.Values[0][1].(interface{ Int64() (int64, error) }).Int64()
		want += int(n)
	}
	if want != 4+0+4+18 {
		t.Fatalf("InfluxDB holds %d free bays; the test data says 26", want)
	}
	if got := textOf(t, body, "free-total"); got != fmt.Sprint(want) {
		t.Errorf("area shows %s free bays, InfluxDB holds %d", got, want)
	}
	if got := textOf(t, body, "free-north-l1"); got != "8" {
		t.Errorf("lot north/l1 shows %s free, want 8 (4 in z1, 0+4 in z2)", got)
	}
	if got := textOf(t, body, "gateways-online"); got != "2" {
		t.Errorf("gateways online %s, want 2", got)
	}
	for _, s := range []string{"1 offline", "1 critical", "1 warning", "2.5 kW", "1 denied"} {
		if !strings.Contains(body, s) {
			t.Errorf("area lacks %q", s)
		}
	}
	if !strings.Contains(body, `sse-connect="/live/area"`) {
		t.Error("area page does not connect to its live feed")
	}
}

// readEvents reads server-sent events of one kind from r into a channel.
func readEvents(r io.Reader, event string) <-chan string {
	ch := make(chan string, 16)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		var data []string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			case line == "":
				if name == event {
					ch <- strings.Join(data, "\n")
				}
				name, data = "", nil
			}
		}
	}()
	return ch
}

func TestAreaLive(t *testing.T) {
	p := newPlatform(t)
	p.write(lotPoints(time.Now())...)
	c := p.client("view")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() <-chan string {
		req, _ := http.NewRequestWithContext(ctx, "GET", p.http.URL+"/live/area", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("live: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		t.Cleanup(func() { resp.Body.Close() })
		return readEvents(resp.Body, "area")
	}
	ev1, ev2 := open(), open()
	for _, ev := range []<-chan string{ev1, ev2} {
		select {
		case frag := <-ev:
			if got := textOf(t, frag, "free-total"); got != "26" {
				t.Fatalf("first fragment: %s free, want 26", got)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no first fragment")
		}
	}
	// Two browsers, one poller.
	if n := p.srv.live.watching(); n != 1 {
		t.Errorf("%d feeds for two clients of one view, want 1", n)
	}
	p.write(fmt.Sprintf("parking_lot,site=south,gateway=gw-9,lot=s1,zone=a capacity=20i,occupied=10i,free=10i,in_total=true %d", time.Now().UnixMilli()))
	for _, ev := range []<-chan string{ev1, ev2} {
		deadline := time.After(30 * time.Second)
		for got := ""; got != "18"; {
			select {
			case frag, ok := <-ev:
				if !ok {
					t.Fatal("stream ended")
				}
				got = textOf(t, frag, "free-total")
			case <-deadline:
				t.Fatal("the new count never came")
			}
		}
	}
	cancel()
	testenv.WaitFor(t, 10*time.Second, "the poller to stop when nobody watches", func() bool { return p.srv.live.watching() == 0 })
}

func TestLotGrid(t *testing.T) {
	p := newPlatform(t)
	ms := time.Now().UnixMilli()
	p.write(
		fmt.Sprintf("parking_bay,site=north,gateway=gw-1,device=bay-001,lot=l1,zone=z1,bay=001 occupied=true %d", ms-1000),
		fmt.Sprintf("parking_bay,site=north,gateway=gw-1,device=bay-002,lot=l1,zone=z1,bay=002 occupied=false %d", ms-1000),
		fmt.Sprintf("parking_bay,site=north,gateway=gw-1,device=bay-003,lot=l1,zone=z1,bay=003 occupied=false,sensor_fault=true %d", ms-1000),
		fmt.Sprintf("parking_bay,site=north,gateway=gw-1,device=bay-004,lot=l1,zone=z1,bay=004 occupied=false %d", ms-int64(3*time.Hour/time.Millisecond)),
		fmt.Sprintf("parking_lot,site=north,gateway=gw-1,lot=l1,zone=z1 capacity=5i,occupied=1i,free=2i,in_total=true %d", ms-1000),
		fmt.Sprintf("parking_lot,site=north,gateway=gw-1,lot=l1,zone=z1 capacity=5i,occupied=3i,free=0i,in_total=true %d", ms-int64(2*time.Hour/time.Millisecond)),
		fmt.Sprintf("guidance_display,site=north,gateway=gw-1,device=sign-1,lot=l1,zone=z1 shown=7i,blank=false,faults=0i,brightness=9i %d", ms-1000),
		fmt.Sprintf("guidance_display,site=north,gateway=gw-1,device=sign-2,lot=l1,zone=z1 blank=true,faults=2i,brightness=9i %d", ms-1000),
	)
	p.online("north", "gw-1", payload.DeviceInfo{ID: "bay-005", Driver: "modbus", Measurement: "parking_bay", Tags: map[string]string{"lot": "l1", "zone": "z1", "bay": "005"}})
	code, body, _ := p.get(p.client("view"), "/lots/north/l1")
	if code != 200 {
		t.Fatalf("lot: HTTP %d\n%s", code, body)
	}
	for dev, want := range map[string]string{"bay-001": BayOccupied, "bay-002": BayFree, "bay-003": BayFault, "bay-004": BayUnknown, "bay-005": BayUnknown} {
		m := regexp.MustCompile(`id="bay-gw-1-` + dev + `" data-state="([a-z]+)"`).FindStringSubmatch(body)
		if m == nil || m[1] != want {
			t.Errorf("%s: %v, want %s", dev, m, want)
		}
	}
	if got := textOf(t, body, "sign-gw-1-sign-1"); got != "7" {
		t.Errorf("sign 1 shows %q, want 7", got)
	}
	if got := textOf(t, body, "sign-gw-1-sign-2"); got != "blank" || !strings.Contains(body, "faults 2") {
		t.Errorf("sign 2 shows %q, want blank with faults 2", got)
	}
	if got := textOf(t, body, "lot-free"); got != "2" {
		t.Errorf("lot free %s, want 2", got)
	}
	m := regexp.MustCompile(`data-plot="([^"]*)"`).FindStringSubmatch(body)
	if m == nil || !strings.Contains(m[1], "&#34;t&#34;:[") || strings.Contains(m[1], "&#34;t&#34;:null") {
		t.Errorf("plot data %v: want a series", m)
	}
	if code, _, _ := p.get(p.client("view"), "/lots/north/nope"); code != http.StatusNotFound {
		t.Errorf("unknown lot: HTTP %d", code)
	}
}

func TestCommandsNeedOperatorAndCSRF(t *testing.T) {
	p := newPlatform(t)
	p.online("north", "gw-1", payload.DeviceInfo{ID: "bay-001", Driver: "modbus", Measurement: "parking_bay"})
	// A command service that is not connected to a broker: the round trip
	// through a gateway is the browser test's.
	cmds, err := command.New(command.Config{BrokerURL: "tcp://127.0.0.1:1", ClientID: "web-test", Gateway: p.fleet.Gateway})
	if err != nil {
		t.Fatal(err)
	}
	p.srv.cmds = cmds
	view, op := p.client("view"), p.client("op")
	_, vpage, _ := p.get(view, "/gateways/north/gw-1")
	if !strings.Contains(vpage, `id="no-commands"`) || strings.Contains(vpage, `id="command-form"`) {
		t.Error("the viewer's gateway page offers commands")
	}
	var lastBody string
	post := func(c *http.Client, token string, form url.Values) int {
		t.Helper()
		if token != "" {
			form.Set("csrf", token)
		}
		resp, err := c.PostForm(p.http.URL+"/gateways/north/gw-1/command/send", form)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		lastBody = string(b)
		resp.Body.Close()
		return resp.StatusCode
	}
	led := url.Values{"name": {"device.write"}, "device": {"bay-001"}, "point": {"led"}, "value": {"red"}}
	if code := post(view, csrf(t, vpage), led); code != http.StatusForbidden {
		t.Errorf("viewer with CSRF token: HTTP %d, want 403", code)
	}
	if code := post(op, "", led); code != http.StatusForbidden {
		t.Errorf("operator without CSRF token: HTTP %d, want 403", code)
	}
	_, opage, _ := p.get(op, "/gateways/north/gw-1")
	if !strings.Contains(opage, `id="command-form"`) {
		t.Fatal("the operator's gateway page has no command form")
	}
	if code := post(op, csrf(t, vpage), led); code != http.StatusForbidden {
		t.Errorf("operator with the viewer's CSRF token: HTTP %d, want 403", code)
	}
	if code := post(op, csrf(t, opage), led); code != http.StatusOK || !strings.Contains(lastBody, `data-status="failed"`) || !strings.Contains(lastBody, "not connected to the broker") {
		t.Errorf("operator, command service without a broker: HTTP %d\n%s", code, lastBody)
	}
	// Logout needs the token too, and ends the session.
	resp, _ := op.PostForm(p.http.URL+"/logout", url.Values{"csrf": {csrf(t, opage)}})
	resp.Body.Close()
	if code, _, h := p.get(op, "/gateways/north/gw-1"); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/login") {
		t.Errorf("after logout: HTTP %d to %q", code, h.Get("Location"))
	}
}

func TestCommandForm(t *testing.T) {
	for _, tc := range []struct {
		f    commandForm
		err  string
		args string
	}{
		{f: commandForm{Name: "ping"}, args: "map[]"},
		{f: commandForm{Name: "device.write", Device: "bay-001", Point: "led", Value: "red"}, args: "map[device:bay-001 point:led value:red]"},
		{f: commandForm{Name: "device.write", Device: "bay-001", Point: "threshold_cm", Value: "140"}, args: "map[device:bay-001 point:threshold_cm value:140]"},
		{f: commandForm{Name: "device.write", Device: "bay-001"}, err: "needs a device, a point and a value"},
		{f: commandForm{Name: "credentials.sync", Version: "x", Credentials: "[]"}, err: `version "x"`},
		{f: commandForm{Name: "credentials.sync", Version: "3", Credentials: "[{"}, err: "JSON array"},
		{f: commandForm{Name: "rm -rf"}, err: "want one of"},
	} {
		req, err := tc.f.request()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: %v, want %q", tc.f, err, tc.err)
			}
			continue
		}
		if err != nil || fmt.Sprint(req.Args) != strings.Replace(tc.args, "map[]", "map[]", 1) && !(tc.args == "map[]" && req.Args == nil) {
			t.Errorf("%+v: args %v %v, want %s", tc.f, req.Args, err, tc.args)
		}
	}
}

func TestAccessAndSolar(t *testing.T) {
	p := newPlatform(t)
	accessSolarData(p)
	c := p.client("view")
	code, body, _ := p.get(c, "/access")
	if code != 200 {
		t.Fatalf("access: HTTP %d\n%s", code, body)
	}
	for _, s := range []string{"card-1001", "card-6666", "unknown credential", `<span class="door forced bad">forced</span>`} {
		if !strings.Contains(body, s) {
			t.Errorf("access view lacks %q", s)
		}
	}
	if !regexp.MustCompile(`rd-1</td><td>osdp</td>\s*<td><span class="ok">online`).MatchString(body) || !regexp.MustCompile(`rd-2</td><td>osdp</td>\s*<td><span class="bad" title="no reply">offline`).MatchString(body) {
		t.Errorf("readers: want rd-1 online and rd-2 offline\n%s", body)
	}
	_, body, _ = p.get(c, "/access?q=6666")
	if !strings.Contains(body, "card-6666") || strings.Contains(body, "card-1001") {
		t.Error("search for 6666 does not find only card-6666")
	}
	_, body, _ = p.get(c, "/access?result=granted")
	if !strings.Contains(body, "card-1001") || strings.Contains(body, "card-6666") {
		t.Error("filter granted shows more or less than granted")
	}
	code, body, _ = p.get(c, "/solar")
	if code != 200 {
		t.Fatalf("solar: HTTP %d\n%s", code, body)
	}
	for _, s := range []string{`id="pv-power">2.0 kW`, "2.5 kWh today", "380.5", "MPPT", "42.0 °C"} {
		if !strings.Contains(body, s) {
			t.Errorf("solar view lacks %q", s)
		}
	}
}

func TestSharedCall(t *testing.T) {
	var s shared[int]
	release := make(chan struct{})
	var calls atomic.Int32
	fn := func(context.Context) (int, error) { calls.Add(1); <-release; return 42, nil }
	results := make(chan int, 3)
	go func() { v, _ := s.do(context.Background(), "k", fn); results <- v }()
	testenv.WaitFor(t, 10*time.Second, "the first call to run", func() bool { return calls.Load() == 1 })
	for i := 0; i < 2; i++ {
		go func() { v, _ := s.do(context.Background(), "k", fn); results <- v }()
	}
	testenv.WaitFor(t, 10*time.Second, "the callers to wait", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.calls["k"].waiting == 2
	})
	// A caller that gives up gets its context's error; the others wait on.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.do(ctx, "k", fn); err != context.Canceled {
		t.Errorf("cancelled caller: %v", err)
	}
	close(release)
	for i := 0; i < 3; i++ {
		if v := <-results; v != 42 {
			t.Errorf("result %d", v)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("fn ran %d times for three callers at once, want 1", n)
	}
	// After it ended, a new call runs fn again.
	if v, _ := s.do(context.Background(), "k", func(context.Context) (int, error) { return 7, nil }); v != 7 {
		t.Errorf("later call: %d", v)
	}
}

// accessSolarData writes access, door, solar and reader data, and a gateway
// with two OSDP readers.
func accessSolarData(p *platform) {
	now := time.Now()
	ms := now.UnixMilli()
	y, mo, d := now.Date()
	midnight := time.Date(y, mo, d, 0, 0, 0, 0, now.Location()).UnixMilli()
	p.write(
		fmt.Sprintf("access,site=north,gateway=gw-1,door=front,reader=rd-1,result=granted credential=\"card-1001\",reason=\"ok\",latency_ms=12.5 %d", ms-3000),
		fmt.Sprintf("access,site=north,gateway=gw-1,door=front,reader=rd-1,result=denied credential=\"card-6666\",reason=\"unknown credential\",latency_ms=9 %d", ms-2000),
		fmt.Sprintf("door,site=north,gateway=gw-1,door=front state=\"forced\",open=true %d", ms-1000),
		fmt.Sprintf("pv,site=north,gateway=gw-1,device=inv-1,model=103 ac_power_w=1500,ac_energy_wh=5000,temp_c=41.5,state=\"MPPT\" %d", midnight+1000),
		fmt.Sprintf("pv,site=north,gateway=gw-1,device=inv-1,model=103 ac_power_w=2000,ac_energy_wh=7500,temp_c=42,state=\"MPPT\" %d", ms-1000),
		fmt.Sprintf("pv_mppt,site=north,gateway=gw-1,device=inv-1,module=1 dc_voltage_v=380.5,dc_current_a=2.5,dc_power_w=951.25 %d", ms-1000),
		fmt.Sprintf("fault,site=north,gateway=gw-1,device=rd-2,driver=osdp state=\"offline\",message=\"no reply\" %d", ms-1000),
	)
	p.online("north", "gw-1",
		payload.DeviceInfo{ID: "rd-1", Driver: "osdp", Measurement: "access"},
		payload.DeviceInfo{ID: "rd-2", Driver: "osdp", Measurement: "access"})
}
