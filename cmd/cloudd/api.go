package main

import (
	"net/http"

	"github.com/luling-edge/luling/cloud/auth"
)

// protect puts cloudd's HTTP API behind g: GET /healthz is open (load
// balancers and systemd probes carry no token); every other GET or HEAD
// (fleet state, command replies, /metrics) needs a viewer token; every
// other method (sending commands) needs an operator token. Deciding by
// method means a route added later that changes something is an
// operator's without anyone remembering to say so.
func protect(api http.Handler, g *auth.Guard) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", api)
	mux.Handle("GET /", g.Require(auth.Viewer)(api))
	mux.Handle("/", g.Require(auth.Operator)(api))
	return mux
}
