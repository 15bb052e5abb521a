package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/cloud/auth"
	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/payload"
)

// BenchmarkAreaView renders the area view (the whole page, as a logged-in
// browser gets it) over a city: 1,000 gateways, 48 lots of 4 zones, a day
// of lot history every 30 minutes, 200 inverters every 5 minutes, an hour
// of access events and a day of alerts, in a real InfluxDB. It reports the
// 95th percentile of the render time (target: 200 ms on the project's
// 2-core machine).
func BenchmarkAreaView(b *testing.B) {
	in, db := testenv.NewDatabase(b)
	const gateways, lots, zones = 1000, 48, 4
	now := time.Now()
	var lines []string
	flush := func() {
		if len(lines) == 0 {
			return
		}
		resp, err := http.Post(in.URL+"/write?precision=s&db="+db, "text/plain", strings.NewReader(strings.Join(lines, "\n")))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			b.Fatalf("write: HTTP %d", resp.StatusCode)
		}
		lines = lines[:0]
	}
	add := func(format string, args ...any) {
		lines = append(lines, fmt.Sprintf(format, args...))
		if len(lines) == 5000 {
			flush()
		}
	}
	f := fleet.New(time.Minute, nil)
	for g := 0; g < gateways; g++ {
		site := fmt.Sprintf("site-%02d", g%24)
		gw := fmt.Sprintf("gw-%04d", g)
		f.Status(&payload.Status{V: 1, Site: site, Gateway: gw, Online: g%50 != 0, Time: now})
		lot, zone := g%lots, (g/lots)%zones
		for h := 0; h < 48; h++ {
			add("parking_lot,site=%s,gateway=%s,lot=lot-%02d,zone=z%d capacity=40i,occupied=%di,free=%di %d", site, gw, lot, zone, (g+h)%40, 40-(g+h)%40, now.Add(-time.Duration(h)*30*time.Minute).Unix())
		}
		add("gateway_health,site=%s,gateway=%s uplink_connected=true,outbox_bytes=0i %d", site, gw, now.Unix())
		if g%5 == 0 {
			for m := 0; m < 288; m++ {
				add("pv,site=%s,gateway=%s,device=inv-1,model=103 ac_power_w=%d,ac_energy_wh=%d %d", site, gw, 1000+m, 100000+m*80, now.Add(-time.Duration(m)*5*time.Minute).Unix())
			}
		}
		add("access,site=%s,gateway=%s,door=d1,reader=r1,result=granted credential=\"c%d\",reason=\"ok\" %d", site, gw, g, now.Add(-time.Duration(g%3600)*time.Second).Unix())
		if g%10 == 0 {
			add("alert,site=%s,gateway=%s,rule=r,severity=warning,device=d message=\"m\" %d", site, gw, now.Add(-time.Hour).Unix())
		}
	}
	flush()

	users := &auth.UserFile{Path: filepath.Join(b.TempDir(), "users.json"), Cost: bcrypt.MinCost}
	if err := users.Add("bench", auth.Viewer, "password-1"); err != nil {
		b.Fatal(err)
	}
	sessions := auth.NewSessions(auth.SessionOptions{Users: users.Path})
	s, err := New(Config{Influx: &Influx{URL: in.URL, DB: db}, Fleet: f, Sessions: sessions})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	h := s.Handler()
	lw := httptest.NewRecorder()
	if _, err := sessions.Login(lw, httptest.NewRequest("POST", "/login", nil), "bench", "password-1"); err != nil {
		b.Fatal(err)
	}
	cookie := lw.Result().Cookies()[0]
	get := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(cookie)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := get(); w.Code != 200 || !strings.Contains(w.Body.String(), "site-23") {
		b.Fatalf("area view: HTTP %d", w.Code)
	}
	if testing.Verbose() { // what each section costs
		y, m, d := now.Date()
		for _, q := range areaQueries(time.Date(y, m, d, 0, 0, 0, 0, now.Location())) {
			start := time.Now()
			for i := 0; i < 5; i++ {
				if _, err := s.influx.Query(context.Background(), q); err != nil {
					b.Fatal(err)
				}
			}
			b.Logf("%v per query: %s", time.Since(start)/5, q)
		}
	}
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if w := get(); w.Code != 200 {
			b.Fatalf("area view: HTTP %d", w.Code)
		}
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)*95/100].Microseconds())/1000, "p95-ms")
}
