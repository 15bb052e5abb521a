package fleet

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
)

// HTTPOptions adds the parts of the API that live outside the fleet.
type HTTPOptions struct {
	// Health reports whether the process is healthy; nil means always.
	Health func() error
	// Metrics writes further Prometheus text-format metrics (ingest and
	// writer counters).
	Metrics func(w io.Writer)
}

// Handler serves /healthz, /api/v1/gateways, /api/v1/gateways/{site}/{gateway}
// and /metrics.
func (f *Fleet) Handler(o HTTPOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if o.Health != nil {
			if err := o.Health(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /api/v1/gateways", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"gateways": f.Gateways(), "rejected_unknown": f.Unknown()})
	})
	mux.HandleFunc("GET /api/v1/gateways/{site}/{gateway}", func(w http.ResponseWriter, r *http.Request) {
		g, ok := f.Gateway(r.PathValue("site"), r.PathValue("gateway"))
		if !ok {
			http.Error(w, fmt.Sprintf("gateway %s/%s: not known", r.PathValue("site"), r.PathValue("gateway")), http.StatusNotFound)
			return
		}
		writeJSON(w, g)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		bw := bufio.NewWriter(w)
		f.WriteMetrics(bw)
		if o.Metrics != nil {
			o.Metrics(bw)
		}
		bw.Flush()
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// WriteMetrics writes the per-gateway metrics in the Prometheus text format.
func (f *Fleet) WriteMetrics(w io.Writer) {
	gws := f.Gateways()
	type metric struct {
		name, help, typ string
		val             func(g *Gateway) uint64
	}
	b2u := func(b bool) uint64 {
		if b {
			return 1
		}
		return 0
	}
	ms := []metric{
		{"luling_cloud_gateway_online", "1 while the gateway's last status is its birth message, 0 after its Last Will.", "gauge", func(g *Gateway) uint64 { return b2u(g.Online) }},
		{"luling_cloud_messages_total", "Messages written to InfluxDB.", "counter", func(g *Gateway) uint64 { return g.Messages }},
		{"luling_cloud_records_total", "Records in messages written to InfluxDB.", "counter", func(g *Gateway) uint64 { return g.Records }},
		{"luling_cloud_points_written_total", "Points written to InfluxDB, derived parking_lot points included.", "counter", func(g *Gateway) uint64 { return g.PointsWritten }},
		{"luling_cloud_seq_last", "Highest sequence number seen.", "gauge", func(g *Gateway) uint64 { return g.Seq.LastSeq }},
		{"luling_cloud_seq_gaps_open", "Messages missing and still within the grace period.", "gauge", func(g *Gateway) uint64 { return g.Seq.GapsOpen }},
		{"luling_cloud_seq_lost_total", "Messages missing for longer than the grace period.", "counter", func(g *Gateway) uint64 { return g.Seq.Lost }},
		{"luling_cloud_seq_reordered_total", "Late messages that filled a gap.", "counter", func(g *Gateway) uint64 { return g.Seq.Reordered }},
		{"luling_cloud_seq_late_total", "Messages behind the expected number that were never written (their gap was declared lost); written now.", "counter", func(g *Gateway) uint64 { return g.Seq.Late }},
		{"luling_cloud_seq_duplicates_total", "Messages received again with the same content (redelivery), or older than the window; not written again.", "counter", func(g *Gateway) uint64 { return g.Seq.Duplicates }},
		{"luling_cloud_seq_conflicts_total", "Sequence numbers received again with different content; the first write is kept.", "counter", func(g *Gateway) uint64 { return g.Seq.Conflicts }},
		{"luling_cloud_seq_far_below_total", "Sequence numbers far below the expected one (a second consecutive one restarts tracking).", "counter", func(g *Gateway) uint64 { return g.Seq.FarBelow }},
		{"luling_cloud_seq_declared_lost_total", "Missing messages the gateway declared dropped (outbox full, corrupt, missing on its disk).", "counter", func(g *Gateway) uint64 { return g.Seq.DeclaredLost }},
		{"luling_cloud_seq_skipped_total", "Sequence numbers the gateway declared unused.", "counter", func(g *Gateway) uint64 { return g.Seq.Skipped }},
		{"luling_cloud_seq_resets_total", "Restarts of the sequence tracking (re-flashed gateway, or a confirmed jump).", "counter", func(g *Gateway) uint64 { return g.Seq.Resets }},
	}
	for _, m := range ms {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.typ)
		for i := range gws {
			fmt.Fprintf(w, "%s{site=%s,gateway=%s} %d\n", m.name, quote(gws[i].Site), quote(gws[i].Gateway), m.val(&gws[i]))
		}
	}
	const rej = "luling_cloud_rejected_total"
	writeByReason(w, rej, "Messages rejected, by reason.", gws, func(g *Gateway) map[string]uint64 { return g.Rejected })
	unk := f.Unknown()
	for _, reason := range sortedKeys(unk) {
		fmt.Fprintf(w, "%s{site=\"\",gateway=\"\",reason=%s} %d\n", rej, quote(reason), unk[reason])
	}
	writeByReason(w, "luling_cloud_records_dropped_total", "Records left out of written messages, by reason.", gws,
		func(g *Gateway) map[string]uint64 { return g.RecordsDropped })
}

// writeByReason writes the header of a counter family and one sample per
// gateway and reason.
func writeByReason(w io.Writer, name, help string, gws []Gateway, counts func(*Gateway) map[string]uint64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
	for i := range gws {
		m := counts(&gws[i])
		for _, reason := range sortedKeys(m) {
			fmt.Fprintf(w, "%s{site=%s,gateway=%s,reason=%s} %d\n", name, quote(gws[i].Site), quote(gws[i].Gateway), quote(reason), m[reason])
		}
	}
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// quote quotes a Prometheus label value (backslash, quote and newline
// escaped).
func quote(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return `"` + s + `"`
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
