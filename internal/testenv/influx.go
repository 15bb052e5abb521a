package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Influx is an InfluxDB 1.8 server. One server is shared by all tests of a
// test binary; each test gets its own database from NewDatabase.
type Influx struct {
	URL  string
	proc *process
	dir  string
	bin  string
	conf string
}

var (
	influxOnce sync.Once
	influxSrv  *Influx
	influxErr  error
	influxMiss string
)

// FindInfluxd returns the influxd binary: $LULING_INFLUXD, .tools/bin/influxd
// of the repository, or influxd on the PATH; "" when there is none.
func FindInfluxd() string {
	if p := os.Getenv("LULING_INFLUXD"); p != "" {
		return p
	}
	if root, err := RepoRoot(); err == nil {
		p := filepath.Join(root, ".tools", "bin", "influxd")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("influxd"); err == nil {
		return p
	}
	return ""
}

// influxData are the [data] settings testenv gives every server: no query
// log, and the WAL written and fsynced on every write request (InfluxDB's
// own default).
var influxData = map[string]string{
	"query-log-enabled": "false",
	"wal-fsync-delay":   `"0s"`,
}

// StartInflux starts an influxd with a generated config in dir on free
// loopback ports and waits until it answers /ping. Stop it with Close.
func StartInflux(bin, dir string, httpPort, rpcPort int) (*Influx, error) {
	return StartInfluxWith(bin, dir, httpPort, rpcPort, nil)
}

// StartInfluxWith is StartInflux with further settings of the [data]
// section, key to TOML value (`"tsi1"` with its quotes, `4`), which replace
// testenv's own: for benchmarks that measure what a setting costs or saves.
// A key that is not a plain setting name is an error.
func StartInfluxWith(bin, dir string, httpPort, rpcPort int, data map[string]string) (*Influx, error) {
	for _, d := range []string{"meta", "data", "wal"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	settings := maps.Clone(influxData)
	for k, v := range data {
		if k == "" || strings.Trim(k, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" || k == "dir" || k == "wal-dir" {
			return nil, fmt.Errorf("influxd [data] setting %q: want a setting name such as index-version (dir and wal-dir are testenv's)", k)
		}
		if v == "" || strings.ContainsAny(v, "\n\r") {
			return nil, fmt.Errorf("influxd [data] setting %s: value %q: want one TOML value", k, v)
		}
		settings[k] = v
	}
	var extra strings.Builder
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		fmt.Fprintf(&extra, "  %s = %s\n", k, settings[k])
	}
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "%s/meta"
[data]
  dir = "%s/data"
  wal-dir = "%s/wal"
%s[http]
  bind-address = "127.0.0.1:%d"
  log-enabled = false
  flux-enabled = true
  max-body-size = 0
[logging]
  level = "warn"
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
`, rpcPort, dir, dir, dir, extra.String(), httpPort)
	cf := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	in := &Influx{URL: fmt.Sprintf("http://127.0.0.1:%d", httpPort), dir: dir, bin: bin, conf: cf}
	if err := in.Start(); err != nil {
		return nil, err
	}
	return in, nil
}

// Start starts the server (again, after Stop) on the same ports and data,
// and waits until it answers /ping.
func (in *Influx) Start() error {
	p, err := startProcess(in.bin, "-config", in.conf)
	if err != nil {
		return err
	}
	in.proc = p
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(in.URL + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		if p.exited() || time.Now().After(deadline) {
			p.stop(syscall.SIGKILL)
			return fmt.Errorf("influxd did not answer /ping: %v\n%s", err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server gracefully; Start brings it back with its data.
// A test that stops the shared server must start it again before it ends.
func (in *Influx) Stop() { in.proc.stop(syscall.SIGTERM) }

// Close stops the server.
func (in *Influx) Close() { in.Stop() }

// PID is the running server's process id, for reading its CPU time.
func (in *Influx) PID() int { return in.proc.cmd.Process.Pid }

// CreateDatabase creates database name (nothing happens when it exists).
func (in *Influx) CreateDatabase(name string) error {
	_, err := in.Query("", "CREATE DATABASE "+name)
	return err
}

// SharedInflux returns the test binary's InfluxDB server, starting it on
// first use. It is stopped when the process exits (Pdeathsig) or by
// StopShared from TestMain.
func SharedInflux(t testing.TB) *Influx {
	t.Helper()
	influxOnce.Do(func() {
		bin := FindInfluxd()
		if bin == "" {
			influxMiss = "run `make services` (go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10 into .tools/bin)"
			return
		}
		dir, err := os.MkdirTemp("", "luling-influx-")
		if err != nil {
			influxErr = err
			return
		}
		influxSrv, influxErr = StartInflux(bin, dir, FreePort(t), FreePort(t))
	})
	if influxMiss != "" {
		missing(t, "influxd", influxMiss)
	}
	if influxErr != nil {
		t.Fatalf("testenv: %v", influxErr)
	}
	return influxSrv
}

// StopShared stops the shared server and removes its data; call it from
// TestMain after m.Run.
func StopShared() {
	if influxSrv != nil {
		influxSrv.Close()
		os.RemoveAll(influxSrv.dir)
	}
}

var dbCounter struct {
	sync.Mutex
	n int
}

// NewDatabase creates a fresh database on the shared server and returns the
// server and the database's name.
func NewDatabase(t testing.TB) (*Influx, string) {
	t.Helper()
	in := SharedInflux(t)
	dbCounter.Lock()
	dbCounter.n++
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbCounter.n)
	dbCounter.Unlock()
	if err := in.CreateDatabase(name); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return in, name
}

// Series is one series of an InfluxQL result.
type Series struct {
	Name    string            `json:"name"`
	Tags    map[string]string `json:"tags"`
	Columns []string          `json:"columns"`
	Values  [][]any           `json:"values"`
}

// Rows returns the series' values as maps from column to value.
func (s Series) Rows() []map[string]any {
	out := make([]map[string]any, len(s.Values))
	for i, v := range s.Values {
		m := make(map[string]any, len(v))
		for j, c := range s.Columns {
			if j < len(v) {
				m[c] = v[j]
			}
		}
		for k, tv := range s.Tags {
			m[k] = tv
		}
		out[i] = m
	}
	return out
}

// Query runs an InfluxQL statement (through /query, epoch=ns) and returns the
// series of its first result.
func (in *Influx) Query(db, q string) ([]Series, error) {
	form := url.Values{"q": {q}, "epoch": {"ns"}}
	if db != "" {
		form.Set("db", db)
	}
	resp, err := http.Post(in.URL+"/query", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("influx query %q: %w", q, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("influx query %q: HTTP %d: %s", q, resp.StatusCode, body)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	var r struct {
		Results []struct {
			Series []Series `json:"series"`
			Error  string   `json:"error"`
		} `json:"results"`
		Error string `json:"error"`
	}
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("influx query %q: decode: %w", q, err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("influx query %q: %s", q, r.Error)
	}
	if len(r.Results) == 0 {
		return nil, nil
	}
	if r.Results[0].Error != "" {
		return nil, fmt.Errorf("influx query %q: %s", q, r.Results[0].Error)
	}
	return r.Results[0].Series, nil
}
