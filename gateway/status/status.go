// Package status serves a gateway's local status page for installers and
// monitoring: /status as JSON (uplink, outbox, every bus and device with its
// counters, last values and their age), /metrics in the Prometheus text
// format, and /healthz for a supervisor's liveness probe.
//
// The gateway hands the server a function that returns a fresh Snapshot; the
// server never reaches into the gateway's internals.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Snapshot is the gateway's state at one moment.
type Snapshot struct {
	Site     string    `json:"site"`
	Gateway  string    `json:"gateway"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	Now      time.Time `json:"now"`
	RSSBytes int64     `json:"rss_bytes"`
	// HeapInuseBytes is the Go heap in use; CPUSeconds the process's user
	// and system CPU time.
	HeapInuseBytes uint64   `json:"heap_inuse_bytes"`
	CPUSeconds     float64  `json:"cpu_seconds"`
	Uplink         Uplink   `json:"uplink"`
	Outbox         Outbox   `json:"outbox"`
	Pipeline       Pipeline `json:"pipeline"`
	Buses          []Bus    `json:"buses"`
	Devices        []Device `json:"devices"`
	Rules          []Rule   `json:"rules,omitempty"`
	Lanes          []Lane   `json:"lanes,omitempty"`
	Lots           []Lot    `json:"lots,omitempty"`
	Problems       []string `json:"problems,omitempty"`
	GoRoutine      int      `json:"goroutines"`
}

// Lane is an entrance lane's state (package gateway/lane).
type Lane struct {
	Name      string `json:"name"`
	Lot       string `json:"lot,omitempty"`
	Direction string `json:"direction"`
	State     string `json:"state"` // the barrier's: closed, opening, open, closing, fault
	Arming    bool   `json:"arming"`
	Safety    bool   `json:"safety"`
	Pending   int    `json:"pending"` // vehicles let through that have not passed yet
	Granted   uint64 `json:"granted"`
	Denied    uint64 `json:"denied"`
	Passed    uint64 `json:"passed"`
	Tailgates uint64 `json:"tailgates"`
	Timeouts  uint64 `json:"timeouts"`
	Faults    uint64 `json:"faults"`
}

// Lot is a lot's count at its lanes.
type Lot struct {
	Name     string `json:"name"`
	Capacity int    `json:"capacity"`
	Occupied int    `json:"occupied"`
	Free     int    `json:"free"`
}

// Uplink is the MQTT connection's state.
type Uplink struct {
	Connected   bool      `json:"connected"`
	Broker      string    `json:"broker,omitempty"`
	Connects    uint64    `json:"connects"`
	Losses      uint64    `json:"connection_losses"`
	Published   uint64    `json:"published"`
	Acked       uint64    `json:"acked"`
	InFlight    int       `json:"in_flight"`
	LastError   string    `json:"last_error,omitempty"`
	LastPubAck  time.Time `json:"last_puback,omitempty"`
	LastConnect time.Time `json:"last_connect,omitempty"`
}

// Outbox is the durable queue's state.
type Outbox struct {
	Bytes           int64  `json:"bytes"`
	MaxBytes        int64  `json:"max_bytes"`
	Messages        int64  `json:"unacked_messages"`
	Records         int64  `json:"unacked_records"`
	NextSeq         uint64 `json:"next_seq"`
	AckedSeq        uint64 `json:"acked_seq"`
	DroppedMessages int64  `json:"dropped_messages"`
	DroppedRecords  int64  `json:"dropped_records"`
	Appended        int64  `json:"appended_records"`
	Fsyncs          int64  `json:"fsyncs"`
}

// Pipeline counts what the pipeline saw and passed on.
type Pipeline struct {
	Readings  uint64 `json:"readings"`
	Reported  uint64 `json:"reported"`
	Events    uint64 `json:"events"`
	Refused   uint64 `json:"refused"`
	QueueLen  int    `json:"queue_len"`
	SeriesLen int    `json:"series"`
}

// Rule is one local rule's counters.
type Rule struct {
	Name          string  `json:"name"`
	Enabled       bool    `json:"enabled"`
	Evaluations   uint64  `json:"evaluations"`
	Fires         uint64  `json:"fires"`
	Errors        uint64  `json:"errors"`
	ActionErrors  uint64  `json:"action_errors"`
	ActionDropped uint64  `json:"action_dropped"`
	LastError     string  `json:"last_error,omitempty"`
	P50Micros     float64 `json:"p50_us"`
	P99Micros     float64 `json:"p99_us"`
}

// Bus is one serial line.
type Bus struct {
	Name         string  `json:"name"`
	Port         string  `json:"port"`
	State        string  `json:"state"`
	Transactions uint64  `json:"transactions"`
	Timeouts     uint64  `json:"timeouts"`
	Errors       uint64  `json:"errors"`
	Reopens      uint64  `json:"reopens"`
	TurnaroundUS float64 `json:"turnaround_us"` // the silence kept before each request
	BytesOut     uint64  `json:"bytes_out"`
	BytesIn      uint64  `json:"bytes_in"`
	Utilization  float64 `json:"utilization"`
	LastError    string  `json:"last_error,omitempty"`
}

// Device is one field device.
type Device struct {
	ID         string            `json:"id"`
	Driver     string            `json:"driver"`
	Bus        string            `json:"bus,omitempty"`
	Unit       int               `json:"unit,omitempty"`
	State      string            `json:"state"`
	Polls      uint64            `json:"polls"`
	Errors     uint64            `json:"errors"`
	Timeouts   uint64            `json:"timeouts"`
	CRCErrors  uint64            `json:"crc_errors"`
	Skipped    uint64            `json:"skipped"`
	LastPoll   time.Time         `json:"last_poll,omitempty"`
	LastOK     time.Time         `json:"last_ok,omitempty"`
	AgeSeconds float64           `json:"age_s"`
	LastError  string            `json:"last_error,omitempty"`
	LastValues []Record          `json:"last_values,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	// Details is the driver's own state (drivers.Reporter), such as a
	// plugin's process, protocol and restarts.
	Details map[string]any `json:"details,omitempty"`
}

// Record is one record of a device's last successful poll. A device that
// yields several records per poll (an inverter's pv and one pv_mppt per
// module) shows each apart, keyed by measurement and tags.
type Record struct {
	Measurement string            `json:"measurement"`
	Tags        map[string]string `json:"tags,omitempty"`
	Fields      map[string]any    `json:"fields"`
	Time        time.Time         `json:"time"`
}

// Server is the status HTTP server.
type Server struct {
	snap   func() *Snapshot
	log    *slog.Logger
	srv    *http.Server
	ln     net.Listener
	prefix string
}

// Listen binds addr (host:port) and returns a server ready to Serve.
func Listen(addr string, snap func() *Snapshot, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status: listen on %s: %w", addr, err)
	}
	s := &Server{snap: snap, log: log, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "luling gatewayd: /status (JSON), /metrics (Prometheus), /healthz")
	})
	addProfiling(mux)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Addr returns the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve runs until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.srv.Shutdown(sctx)
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("status: serve: %w", err)
	}
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s.snap()); err != nil {
		s.log.Debug("status: write response", "err", err)
	}
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	WriteMetrics(w, s.snap())
}

// metricWriter writes the Prometheus text exposition format.
type metricWriter struct {
	b    strings.Builder
	seen map[string]bool
}

func (m *metricWriter) add(name, typ, help string, value float64, labels ...string) {
	if !m.seen[name] {
		m.seen[name] = true
		fmt.Fprintf(&m.b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	m.b.WriteString(name)
	if len(labels) > 0 {
		m.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				m.b.WriteByte(',')
			}
			m.b.WriteString(labels[i])
			m.b.WriteString(`="`)
			m.b.WriteString(escapeLabel(labels[i+1]))
			m.b.WriteByte('"')
		}
		m.b.WriteByte('}')
	}
	m.b.WriteByte(' ')
	m.b.WriteString(formatValue(value))
	m.b.WriteByte('\n')
}

// formatValue prints v as a person would write it: whole numbers without
// exponent or fraction, others with 15 significant digits, which drops
// the binary noise of a division (0.0036458330000000002 is 0.003645833).
func formatValue(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	s := strconv.FormatFloat(v, 'g', 15, 64)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		// Shortest form of the rounded value ('g' with a precision may
		// keep trailing zeros in the exponent form).
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return s
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// pluginMetrics writes a plugin device's restarts and state, from the
// details its driver reports (plugins/host: plugin, state, restarts).
func pluginMetrics(m *metricWriter, d Device) {
	path, ok := d.Details["plugin"].(string)
	if !ok {
		return
	}
	l := []string{"device", d.ID, "plugin", path}
	if n, ok := number(d.Details["restarts"]); ok {
		m.add("luling_gateway_plugin_restarts_total", "counter", "Times the plugin process was restarted.", n, l...)
	}
	if st, ok := d.Details["state"].(string); ok {
		m.add("luling_gateway_plugin_running", "gauge", "1 when the plugin process runs and answers; the state label says what it does otherwise.",
			b2f(st == "running"), append(l, "state", st)...)
	}
}

// number converts the integer and float kinds a report holds.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// WriteMetrics writes a snapshot in the Prometheus text format. Metric names
// start with luling_gateway_.
func WriteMetrics(w interface{ Write([]byte) (int, error) }, s *Snapshot) {
	m := &metricWriter{seen: map[string]bool{}}
	m.add("luling_gateway_info", "gauge", "Gateway identity and version.", 1, "site", s.Site, "gateway", s.Gateway, "version", s.Version)
	m.add("luling_gateway_uptime_seconds", "gauge", "Seconds since gatewayd started.", s.Now.Sub(s.Started).Seconds())
	m.add("luling_gateway_rss_bytes", "gauge", "Resident memory of gatewayd.", float64(s.RSSBytes))
	m.add("go_goroutines", "gauge", "Number of goroutines that currently exist.", float64(s.GoRoutine))
	m.add("go_memstats_heap_inuse_bytes", "gauge", "Number of heap bytes that are in use.", float64(s.HeapInuseBytes))
	m.add("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", float64(s.RSSBytes))
	m.add("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", s.CPUSeconds)
	m.add("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", float64(s.Started.Unix()))
	m.add("luling_gateway_uplink_connected", "gauge", "1 when the MQTT uplink is connected.", b2f(s.Uplink.Connected))
	m.add("luling_gateway_uplink_connects_total", "counter", "MQTT connections made.", float64(s.Uplink.Connects))
	m.add("luling_gateway_uplink_connection_losses_total", "counter", "MQTT connections lost.", float64(s.Uplink.Losses))
	m.add("luling_gateway_uplink_published_total", "counter", "Messages published (including replays).", float64(s.Uplink.Published))
	m.add("luling_gateway_uplink_acked_total", "counter", "Messages acknowledged by the broker.", float64(s.Uplink.Acked))
	m.add("luling_gateway_outbox_bytes", "gauge", "Bytes the outbox holds on disk.", float64(s.Outbox.Bytes))
	m.add("luling_gateway_outbox_unacked_messages", "gauge", "Messages not yet acknowledged by the broker.", float64(s.Outbox.Messages))
	m.add("luling_gateway_outbox_unacked_records", "gauge", "Records not yet acknowledged by the broker.", float64(s.Outbox.Records))
	m.add("luling_gateway_outbox_dropped_records_total", "counter", "Records dropped because the outbox was full.", float64(s.Outbox.DroppedRecords))
	m.add("luling_gateway_outbox_appended_records_total", "counter", "Records accepted into the outbox.", float64(s.Outbox.Appended))
	m.add("luling_gateway_pipeline_readings_total", "counter", "Readings produced by drivers.", float64(s.Pipeline.Readings))
	m.add("luling_gateway_pipeline_reported_total", "counter", "Readings reported after report-by-exception.", float64(s.Pipeline.Reported))
	m.add("luling_gateway_pipeline_refused_total", "counter", "Records the outbox refused.", float64(s.Pipeline.Refused))
	for _, b := range s.Buses {
		l := []string{"bus", b.Name, "port", b.Port}
		m.add("luling_gateway_bus_up", "gauge", "1 when the bus's port is open.", b2f(b.State == "up"), l...)
		m.add("luling_gateway_bus_transactions_total", "counter", "Transactions on the bus.", float64(b.Transactions), l...)
		m.add("luling_gateway_bus_timeouts_total", "counter", "Transactions without a reply in time.", float64(b.Timeouts), l...)
		m.add("luling_gateway_bus_errors_total", "counter", "Transactions that failed otherwise.", float64(b.Errors), l...)
		m.add("luling_gateway_bus_reopens_total", "counter", "Times the port was reopened.", float64(b.Reopens), l...)
		m.add("luling_gateway_bus_utilization", "gauge", "Share of time the line was busy.", b.Utilization, l...)
		m.add("luling_gateway_bus_turnaround_seconds", "gauge", "Silence kept on the line before each request.", b.TurnaroundUS/1e6, l...)
	}
	for _, r := range s.Rules {
		l := []string{"rule", r.Name}
		m.add("luling_gateway_rule_evaluations_total", "counter", "Rule condition evaluations.", float64(r.Evaluations), l...)
		m.add("luling_gateway_rule_fires_total", "counter", "Times a rule fired.", float64(r.Fires), l...)
		m.add("luling_gateway_rule_errors_total", "counter", "Rule evaluation errors.", float64(r.Errors), l...)
		m.add("luling_gateway_rule_action_dropped_total", "counter", "Rule actions dropped because a queue was full.", float64(r.ActionDropped), l...)
		m.add("luling_gateway_rule_eval_p99_seconds", "gauge", "99th percentile of a rule's evaluation latency.", r.P99Micros/1e6, l...)
	}
	for _, ln := range s.Lanes {
		l := []string{"lane", ln.Name, "direction", ln.Direction}
		m.add("luling_gateway_lane_passages_total", "counter", "Vehicles that passed the lane with a grant of their own.", float64(ln.Passed), l...)
		m.add("luling_gateway_lane_tailgates_total", "counter", "Vehicles that passed the lane without a grant of their own.", float64(ln.Tailgates), l...)
		m.add("luling_gateway_lane_denied_total", "counter", "Credentials and visitors the lane refused.", float64(ln.Denied), l...)
		m.add("luling_gateway_lane_faults_total", "counter", "Barrier moves that did not reach their position.", float64(ln.Faults), l...)
		m.add("luling_gateway_lane_barrier_fault", "gauge", "1 while the lane's barrier is in fault.", b2f(ln.State == "fault"), l...)
	}
	for _, lot := range s.Lots {
		m.add("luling_gateway_lot_occupied", "gauge", "Vehicles in the lot as its lanes count them.", float64(lot.Occupied), "lot", lot.Name)
		m.add("luling_gateway_lot_free", "gauge", "Free bays of the lot as its lanes count them.", float64(lot.Free), "lot", lot.Name)
	}
	devs := append([]Device(nil), s.Devices...)
	sort.Slice(devs, func(i, j int) bool { return devs[i].ID < devs[j].ID })
	for _, d := range devs {
		l := []string{"device", d.ID, "driver", d.Driver}
		m.add("luling_gateway_device_up", "gauge", "1 when the device's last poll succeeded.", b2f(d.State == "ok"), l...)
		m.add("luling_gateway_device_polls_total", "counter", "Polls of the device.", float64(d.Polls), l...)
		m.add("luling_gateway_device_errors_total", "counter", "Failed polls of the device.", float64(d.Errors), l...)
		m.add("luling_gateway_device_timeouts_total", "counter", "Polls that timed out.", float64(d.Timeouts), l...)
		m.add("luling_gateway_device_crc_errors_total", "counter", "Replies with a bad checksum.", float64(d.CRCErrors), l...)
		m.add("luling_gateway_device_age_seconds", "gauge", "Seconds since the last successful poll.", d.AgeSeconds, l...)
		pluginMetrics(m, d)
	}
	w.Write([]byte(m.b.String()))
}
