package ingest_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// influxGate is an HTTP proxy in front of a real InfluxDB that a test uses
// to make single write requests slow, held or failing: rule sees each
// write request's body (line protocol) and says what to do with it.
// Everything else, and every write the rule lets through, reaches the
// real server.
type influxGate struct {
	srv   *httptest.Server
	proxy *httputil.ReverseProxy

	mu   sync.Mutex
	rule func(body string) gateAction

	cur, peak atomic.Int64 // write requests inside the gate now, and at most
	writes    atomic.Int64 // write requests seen
	arrived   chan string  // bodies of write requests as they arrive
}

// gateAction is what the gate does with one write request: wait for hold
// to close (or the client to give up), then wait delay, then answer
// status without forwarding (when not 0) or forward it.
type gateAction struct {
	hold   <-chan struct{}
	delay  time.Duration
	status int
}

func newInfluxGate(t testing.TB, target string) *influxGate {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &influxGate{proxy: httputil.NewSingleHostReverseProxy(u), arrived: make(chan string, 1024)}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *influxGate) URL() string { return g.srv.URL }

func (g *influxGate) setRule(r func(body string) gateAction) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rule = r
}

func (g *influxGate) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v2/write" && r.URL.Path != "/write" {
		g.proxy.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	g.writes.Add(1)
	n := g.cur.Add(1)
	defer g.cur.Add(-1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	select {
	case g.arrived <- string(body):
	default:
	}
	g.mu.Lock()
	rule := g.rule
	g.mu.Unlock()
	var a gateAction
	if rule != nil {
		a = rule(string(body))
	}
	if a.hold != nil {
		select {
		case <-a.hold:
		case <-r.Context().Done():
			return
		}
	}
	if a.delay > 0 {
		t := time.NewTimer(a.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if a.status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		io.WriteString(w, `{"code":"unavailable","message":"the test's gate refused this write"}`)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	g.proxy.ServeHTTP(w, r)
}
