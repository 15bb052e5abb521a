//go:build pprof

package status

import (
	"net"
	"net/http"
	"net/http/pprof"
)

// Profiling is true in a gatewayd built with -tags pprof: the status
// listener then serves Go's profiles under /debug/pprof/.
const Profiling = true

// addProfiling serves net/http/pprof under /debug/pprof/ to clients on the
// loopback interface only, whatever address the listener is bound to: a
// profile shows memory contents such as topic names and credentials'
// lengths, and a CPU profile costs the gateway CPU while it runs.
func addProfiling(mux *http.ServeMux) {
	local := func(h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
				http.Error(w, "profiles are served to loopback clients only", http.StatusForbidden)
				return
			}
			h(w, r)
		})
	}
	mux.Handle("GET /debug/pprof/", local(pprof.Index))
	mux.Handle("GET /debug/pprof/cmdline", local(pprof.Cmdline))
	mux.Handle("GET /debug/pprof/profile", local(pprof.Profile))
	mux.Handle("GET /debug/pprof/symbol", local(pprof.Symbol))
	mux.Handle("GET /debug/pprof/trace", local(pprof.Trace))
}
