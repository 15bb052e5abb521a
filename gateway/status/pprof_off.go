//go:build !pprof

package status

import "net/http"

// Profiling is false in the default build: net/http/pprof is not linked
// in. Build gatewayd with -tags pprof to serve /debug/pprof/ (see
// docs/performance.md).
const Profiling = false

func addProfiling(*http.ServeMux) {}
