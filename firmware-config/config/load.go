package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/luling-edge/luling/internal/yamlx"
	"github.com/luling-edge/luling/payload"
	"gopkg.in/yaml.v3"
)

// Keys of each section, in the order docs/config.md lists them.
var (
	rootKeys     = []string{"site", "gateway", "log", "uplink", "outbox", "status", "pipeline", "buses", "devices", "doors", "lots", "lanes", "gpio", "profiles_dir"}
	logKeys      = []string{"level", "format"}
	uplinkKeys   = []string{"brokers", "client_id", "username", "password", "password_file", "tls", "qos", "keepalive", "connect_timeout", "max_inflight", "reconnect_max"}
	tlsKeys      = []string{"ca", "cert", "key", "server_name", "insecure_skip_verify"}
	outboxKeys   = []string{"path", "max_bytes", "commit_interval", "telemetry_window", "batch_max_records"}
	statusKeys   = []string{"listen"}
	pipelineKeys = []string{"health_interval", "max_silence"}
	gpioKeys     = []string{"simulator"}
	busKeys      = []string{"name", "port", "baud", "data_bits", "parity", "stop_bits", "timeout", "backoff_max", "turnaround"}
	deviceKeys   = []string{"id", "repeat", "driver", "bus", "unit", "profile", "poll", "max_silence", "deadband", "tags", "options"}
	repeatKeys   = []string{"from", "to"}
	// topKeys are the keys allowed at the top: rootKeys and rules (whose
	// entries package gateway/rules decodes; docs/rules.md describes them).
	topKeys = append(rootKeys[:len(rootKeys):len(rootKeys)], "rules")
)

// namePattern is payload.ValidID's rule, for the JSON schema.
const namePattern = `^[a-z0-9-]{1,64}$`

var (
	brokerSchemes = []string{"tcp", "ssl", "tls", "mqtt", "mqtts", "ws", "wss"}
	tlsSchemes    = []string{"ssl", "tls", "mqtts", "wss"}
	bauds         = []string{"1200", "2400", "4800", "9600", "19200", "38400", "57600", "115200", "230400"}
	reservedTags  = []string{"site", "gateway", "device"}
)

// Limits on what one file may expand to (one gateway runs up to ~500 devices).
const (
	maxRepeat  = 1000
	maxDevices = 10000
)

// Load reads and checks the config file at path. Relative paths in it are
// resolved against the file's folder. When the file has mistakes the error
// is an *Errors listing all of them.
func Load(path string, opts ...Option) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data, append([]Option{BaseDir(filepath.Dir(path))}, opts...)...)
}

// Parse checks a config held in memory; name is the file name errors
// carry. When data has mistakes the error is an *Errors listing all of them.
func Parse(name string, data []byte, opts ...Option) (cfg *Config, err error) {
	o := &options{rules: map[string]DriverRule{}}
	for _, opt := range opts {
		opt(o)
	}
	if !o.baseDirSet {
		o.baseDir = filepath.Dir(name)
	}
	d := &decoder{Decoder: &yamlx.Decoder{File: name}, opts: o}
	root, ok := d.Parse(data)
	if !ok {
		return nil, d.Err()
	}
	c := d.config(root)
	if err := d.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

func (d *decoder) config(root *yaml.Node) *Config {
	c := &Config{File: d.File}
	if r := yamlx.Resolve(root); r != nil && !yamlx.IsNull(r) && r.Kind != yaml.MappingNode {
		d.Errorf(r, "", "", "expected a mapping of keys at the top of the file, got %s", yamlx.Describe(r))
		return nil
	}
	m := d.Map(root, "", topKeys)
	if m == nil {
		return nil
	}
	c.Site = d.name(m, "site", "e.g. site: lot-a")
	c.Gateway = d.name(m, "gateway", "e.g. gateway: gw-01")
	c.Log = d.logSection(m)
	c.Uplink = d.uplink(m, c.Site, c.Gateway)
	c.Outbox = d.outbox(m)
	c.Status = d.status(m)
	c.Pipeline = d.pipeline(m)
	if n := m.Get("profiles_dir"); n != nil {
		if s, ok := d.Str(n, "profiles_dir"); ok && s != "" {
			c.ProfilesDir = d.abs(s)
			d.checkDir(n, "profiles_dir", s, c.ProfilesDir)
		}
	}
	c.Buses = d.buses(m)
	c.Devices = d.devices(m, c)
	c.Rules = d.rules(m)
	c.Doors = d.doors(m, c.Devices)
	c.Lots = d.lots(m, c.Devices)
	c.Lanes = d.lanes(m, c)
	c.GPIO = d.gpio(m)
	c.GPIOLines = gpioLines(c, d.opts.rules)
	return c
}

// gpioLines lists the GPIO lines the config uses, in file order: device
// options that name one (the driver's option schema says which), then the
// doors' and the lanes' lines.
func gpioLines(c *Config, rules map[string]DriverRule) []string {
	var out []string
	seen := map[string]bool{}
	add := func(name string) {
		if name != "" && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, dev := range c.Devices {
		for _, f := range rules[dev.Driver].Options {
			if s, isStr := dev.Options[f.Key].(string); f.GPIO && isStr {
				add(s)
			}
		}
	}
	for _, door := range c.Doors {
		for _, l := range doorLines(door) {
			add(l)
		}
	}
	for _, ln := range c.Lanes {
		for _, l := range laneLines(ln) {
			add(l)
		}
	}
	return out
}

// gpio reads where the GPIO lines come from. The simulator's socket is not
// checked for existence: the simulator may start after the check.
func (d *decoder) gpio(root *yamlx.Map) GPIO {
	var g GPIO
	m := d.Map(root.Get("gpio"), "gpio", gpioKeys)
	if n := m.Get("simulator"); n != nil {
		const hint = "the unix socket of a GPIO simulator such as devsim gpio serves, e.g. /run/luling/gpio.sock; remove gpio: to use the board's lines"
		if s, ok := d.Str(n, "gpio.simulator"); ok {
			if s == "" {
				d.Errorf(n, "gpio.simulator", hint, "must not be empty")
			} else {
				g.Simulator = d.abs(s)
			}
		}
	}
	return g
}

// name reads a required site or gateway name.
func (d *decoder) name(m *yamlx.Map, key, hint string) string {
	n := m.Get(key)
	if n == nil {
		d.Missing(m, key, hint)
		return ""
	}
	s, ok := d.Str(n, key)
	if !ok {
		return ""
	}
	if !payload.ValidID(s) {
		d.Errorf(n, key, "1 to 64 of a-z, 0-9 and -", "%q is not a valid %s name", s, key)
	}
	return s
}

func (d *decoder) missing(m *yamlx.Map, key, hint string) {
	var at *yaml.Node
	path := ""
	if m != nil {
		at, path = m.Node, m.Path
	}
	d.Errorf(at, yamlx.Join(path, key), hint, "required key is missing")
}

func (d *decoder) logSection(root *yamlx.Map) Log {
	l := Log{Level: DefaultLogLevel, Format: DefaultLogFormat}
	m := d.Map(root.Get("log"), "log", logKeys)
	if n := m.Get("level"); n != nil {
		if v, ok := d.OneOf(n, "log.level", []string{"debug", "info", "warn", "error"}); ok {
			l.Level = v
		}
	}
	if n := m.Get("format"); n != nil {
		if v, ok := d.OneOf(n, "log.format", []string{"text", "json"}); ok {
			l.Format = v
		}
	}
	return l
}

func (d *decoder) uplink(root *yamlx.Map, site, gateway string) Uplink {
	u := Uplink{QoS: DefaultQoS, Keepalive: DefaultKeepalive, ConnectTimeout: DefaultConnectTimeout,
		MaxInflight: DefaultMaxInflight, ReconnectMax: DefaultReconnectMax, ClientID: site + "-" + gateway}
	un := root.Get("uplink")
	if un == nil {
		d.Errorf(root.Node, "uplink", "add uplink: {brokers: [tcp://broker.example:1883]}", "required section is missing")
		return u
	}
	m := d.Map(un, "uplink", uplinkKeys)
	if m == nil {
		return u
	}
	const brokerHint = "e.g. brokers: [tcp://broker.example:1883]"
	if bn := m.Get("brokers"); bn == nil {
		d.Missing(m, "brokers", brokerHint)
	} else if items, ok := d.Seq(bn, "uplink.brokers", brokerHint); ok {
		if len(items) == 0 {
			d.Errorf(bn, "uplink.brokers", brokerHint, "at least one broker is required")
		}
		for i, it := range items {
			p := fmt.Sprintf("uplink.brokers[%d]", i)
			if s, ok := d.Str(it, p); ok && d.broker(it, p, s) {
				u.Brokers = append(u.Brokers, s)
			}
		}
	}
	if n := m.Get("client_id"); n != nil {
		if s, ok := d.Str(n, "uplink.client_id"); ok && s != "" {
			u.ClientID = s
		}
	}
	if n := m.Get("username"); n != nil {
		if v, ok := d.Str(n, "uplink.username"); ok {
			u.Username = v
		}
	}
	pw, pwf := m.Get("password"), m.Get("password_file")
	if pw != nil {
		s, _ := d.Str(pw, "uplink.password")
		u.Password = Secret(s)
	}
	if pwf != nil {
		if s, ok := d.Str(pwf, "uplink.password_file"); ok && s != "" {
			u.PasswordFile = d.abs(s)
			if pw != nil {
				d.Errorf(pwf, "uplink.password_file", "keep one of them", "password and password_file are both set")
			} else if !d.opts.skipFiles {
				data, err := os.ReadFile(u.PasswordFile)
				if err != nil {
					d.Errorf(pwf, "uplink.password_file", d.fileHint(s), "cannot read %s: %v", u.PasswordFile, unwrapPath(err))
				} else {
					u.Password = Secret(strings.TrimRight(string(data), "\r\n"))
				}
			}
		}
	}
	if (u.Password != "" || u.PasswordFile != "") && u.Username == "" {
		at := pw
		if at == nil {
			at = pwf
		}
		d.Errorf(at, "uplink.username", "MQTT 3.1.1 sends a password only with a user name", "a password is set but username is empty")
	}
	u.TLS = d.tls(m)
	if tn := m.Get("qos"); tn != nil {
		if v, ok := d.Int(tn, "uplink.qos", math.MinInt64, math.MaxInt64); ok && v != 1 {
			d.Errorf(tn, "uplink.qos", "the MQTT contract uses QoS 1 everywhere: readings are deleted from the outbox only after the broker's PUBACK", "qos %d is not allowed; only 1 is", v)
		}
	}
	if n := m.Get("keepalive"); n != nil {
		if v, ok := d.Duration(n, "uplink.keepalive", time.Second, 18*time.Hour); ok {
			u.Keepalive = v
		}
	}
	if n := m.Get("connect_timeout"); n != nil {
		if v, ok := d.Duration(n, "uplink.connect_timeout", 100*time.Millisecond, 5*time.Minute); ok {
			u.ConnectTimeout = v
		}
	}
	if n := m.Get("max_inflight"); n != nil {
		if v, ok := d.Int(n, "uplink.max_inflight", 1, 1000); ok {
			u.MaxInflight = int(v)
		}
	}
	if n := m.Get("reconnect_max"); n != nil {
		if v, ok := d.Duration(n, "uplink.reconnect_max", time.Second, 24*time.Hour); ok {
			u.ReconnectMax = v
		}
	}
	if u.TLS.Set() && len(u.Brokers) > 0 {
		secure := false
		for _, b := range u.Brokers {
			if x, err := url.Parse(b); err == nil && slices.Contains(tlsSchemes, strings.ToLower(x.Scheme)) {
				secure = true
			}
		}
		if !secure {
			d.Errorf(m.Get("tls"), "uplink.tls", "use ssl://, tls://, mqtts:// or wss:// brokers, or remove tls", "tls is set but no broker uses TLS")
		}
	}
	return u
}

// fileHint explains where the loader looked for a file written as p.
func (d *decoder) fileHint(p string) string {
	if filepath.IsAbs(p) {
		return "the file must exist on the machine that runs the check"
	}
	return "relative paths are resolved against the config file's folder " + d.opts.baseDir
}

// broker checks one broker URL.
func (d *decoder) broker(n *yaml.Node, path, s string) bool {
	const hint = "e.g. tcp://broker.example:1883 or ssl://broker.example:8883"
	x, err := url.Parse(s)
	if err != nil || x.Scheme == "" || x.Host == "" {
		d.Errorf(n, path, hint, "%q is not a broker URL", s)
		return false
	}
	if !slices.Contains(brokerSchemes, strings.ToLower(x.Scheme)) {
		d.Errorf(n, path, "one of "+strings.Join(brokerSchemes, ", "), "unknown scheme %q", x.Scheme)
		return false
	}
	port := x.Port()
	if port == "" && !strings.HasPrefix(strings.ToLower(x.Scheme), "ws") {
		d.Errorf(n, path, hint, "%q has no port", s)
		return false
	}
	if port != "" {
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			d.Errorf(n, path, hint, "bad port %q", port)
			return false
		}
	}
	return true
}

func (d *decoder) tls(up *yamlx.Map) TLS {
	var t TLS
	tn := up.Get("tls")
	m := d.Map(tn, "uplink.tls", tlsKeys)
	if m == nil {
		return t
	}
	file := func(key string) string {
		n := m.Get(key)
		if n == nil {
			return ""
		}
		s, ok := d.Str(n, "uplink.tls."+key)
		if !ok || s == "" {
			return ""
		}
		p := d.abs(s)
		d.checkFile(n, "uplink.tls."+key, s, p)
		return p
	}
	t.CA, t.Cert, t.Key = file("ca"), file("cert"), file("key")
	if n := m.Get("server_name"); n != nil {
		if v, ok := d.Str(n, "uplink.tls.server_name"); ok {
			t.ServerName = v
		}
	}
	if n := m.Get("insecure_skip_verify"); n != nil {
		if v, ok := d.Bool(n, "uplink.tls.insecure_skip_verify"); ok {
			t.InsecureSkipVerify = v
		}
	}
	if m.Get("cert") != nil && m.Get("key") == nil || m.Get("key") != nil && m.Get("cert") == nil {
		missing, set := "key", "cert"
		if m.Get("cert") == nil {
			missing, set = "cert", "key"
		}
		d.Errorf(m.Node, "uplink.tls."+missing, "a client certificate needs its private key: set cert and key together",
			"required when %s is set", set)
	}
	return t
}

func (d *decoder) outbox(root *yamlx.Map) Outbox {
	o := Outbox{MaxBytes: DefaultOutboxMaxBytes, CommitInterval: DefaultCommitInterval,
		TelemetryWindow: DefaultTelemetryWindow, BatchMaxRecords: DefaultBatchMaxRecords}
	on := root.Get("outbox")
	if on == nil {
		d.Errorf(root.Node, "outbox", "add outbox: {path: /var/lib/luling/outbox}", "required section is missing")
		return o
	}
	m := d.Map(on, "outbox", outboxKeys)
	if m == nil {
		return o
	}
	if n := m.Get("path"); n == nil {
		d.Missing(m, "path", "e.g. path: /var/lib/luling/outbox")
	} else if s, ok := d.Str(n, "outbox.path"); ok {
		if s == "" {
			d.Errorf(n, "outbox.path", "e.g. path: /var/lib/luling/outbox", "must not be empty")
		} else {
			o.Path = d.abs(s)
		}
	}
	if n := m.Get("max_bytes"); n != nil {
		if v, ok := d.size(n, "outbox.max_bytes", 1<<20, 1<<50); ok {
			o.MaxBytes = v
		}
	}
	if n := m.Get("commit_interval"); n != nil {
		if v, ok := d.Duration(n, "outbox.commit_interval", 0, 10*time.Second); ok {
			o.CommitInterval = v
		}
	}
	if n := m.Get("telemetry_window"); n != nil {
		if v, ok := d.Duration(n, "outbox.telemetry_window", 0, 10*time.Second); ok {
			o.TelemetryWindow = v
		}
	}
	if n := m.Get("batch_max_records"); n != nil {
		if v, ok := d.Int(n, "outbox.batch_max_records", 1, 10000); ok {
			o.BatchMaxRecords = int(v)
		}
	}
	return o
}

func (d *decoder) status(root *yamlx.Map) Status {
	s := Status{Listen: DefaultStatusListen}
	m := d.Map(root.Get("status"), "status", statusKeys)
	if n := m.Get("listen"); n != nil {
		v, ok := d.Str(n, "status.listen")
		if !ok {
			return s
		}
		s.Listen = v
		if v == "" {
			return s
		}
		const hint = `host:port such as 127.0.0.1:9100, or "" to disable`
		_, port, err := net.SplitHostPort(v)
		if err != nil {
			d.Errorf(n, "status.listen", hint, "%q is not host:port", v)
			return s
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			d.Errorf(n, "status.listen", hint, "bad port %q", port)
		}
	}
	return s
}

func (d *decoder) pipeline(root *yamlx.Map) Pipeline {
	p := Pipeline{HealthInterval: DefaultHealthInterval, MaxSilence: DefaultMaxSilence}
	m := d.Map(root.Get("pipeline"), "pipeline", pipelineKeys)
	if n := m.Get("health_interval"); n != nil {
		if v, ok := d.Duration(n, "pipeline.health_interval", time.Second, 24*time.Hour); ok {
			p.HealthInterval = v
		}
	}
	if n := m.Get("max_silence"); n != nil {
		if v, ok := d.Duration(n, "pipeline.max_silence", time.Second, 7*24*time.Hour); ok {
			p.MaxSilence = v
		}
	}
	return p
}

func (d *decoder) buses(root *yamlx.Map) []Bus {
	items, _ := d.Seq(root.Get("buses"), "buses", "each bus is an entry starting with - name: ...")
	var out []Bus
	names := map[string]int{}
	ports := map[string]int{}
	for i, it := range items {
		p := fmt.Sprintf("buses[%d]", i)
		if yamlx.IsNull(yamlx.Resolve(it)) {
			d.Errorf(it, p, "remove the lone -, or write the bus's keys under it", "empty entry")
			continue
		}
		m := d.Map(it, p, busKeys)
		if m == nil {
			continue
		}
		b := Bus{Baud: DefaultBaud, DataBits: DefaultDataBits, Parity: DefaultParity, StopBits: DefaultStopBits,
			Timeout: DefaultBusTimeout, BackoffMax: DefaultBackoffMax, Line: yamlx.Resolve(it).Line}
		if n := m.Get("name"); n == nil {
			d.Missing(m, "name", "e.g. name: rs485-1")
		} else if s, ok := d.Str(n, p+".name"); ok {
			if !payload.ValidID(s) {
				d.Errorf(n, p+".name", "1 to 64 of a-z, 0-9 and -", "%q is not a valid bus name", s)
			} else if first, dup := names[s]; dup {
				d.Errorf(n, p+".name", "", "duplicate bus name %q; first defined at line %d", s, first)
			} else {
				names[s] = n.Line
				b.Name = s
			}
		}
		if n := m.Get("port"); n == nil {
			d.Missing(m, "port", "e.g. port: /dev/ttyUSB0")
		} else if s, ok := d.Str(n, p+".port"); ok {
			if s == "" {
				d.Errorf(n, p+".port", "e.g. port: /dev/ttyUSB0", "must not be empty")
			} else {
				key := d.portKey(s)
				if first, dup := ports[key]; dup {
					d.Errorf(n, p+".port", "one port carries one bus; put all its devices on one bus entry", "port %s is already used by the bus at line %d", s, first)
				} else {
					ports[key] = n.Line
				}
				b.Port = s
			}
		}
		if n := m.Get("baud"); n != nil {
			if v, ok := d.Int(n, p+".baud", 0, 1<<31); ok {
				if !slices.Contains(bauds, strconv.FormatInt(v, 10)) {
					d.Errorf(n, p+".baud", "one of "+strings.Join(bauds, " "), "baud %d is not supported", v)
				} else {
					b.Baud = int(v)
				}
			}
		}
		if n := m.Get("data_bits"); n != nil {
			if v, ok := d.Int(n, p+".data_bits", 5, 8); ok {
				b.DataBits = int(v)
			}
		}
		if n := m.Get("parity"); n != nil {
			if v, ok := d.OneOf(n, p+".parity", []string{"none", "even", "odd"}); ok {
				b.Parity = v
			}
		}
		if n := m.Get("stop_bits"); n != nil {
			if v, ok := d.Int(n, p+".stop_bits", 1, 2); ok {
				b.StopBits = int(v)
			}
		}
		timeoutOK := true
		if n := m.Get("timeout"); n != nil {
			var v time.Duration
			if v, timeoutOK = d.Duration(n, p+".timeout", 50*time.Millisecond, 10*time.Second); timeoutOK {
				b.Timeout = v
			}
		}
		if n := m.Get("backoff_max"); n != nil {
			if v, ok := d.Duration(n, p+".backoff_max", 50*time.Millisecond, time.Hour); ok {
				b.BackoffMax = v
				if timeoutOK && v < b.Timeout {
					d.Errorf(n, p+".backoff_max", "", "backoff_max %s is shorter than the bus timeout %s", yamlx.FmtDur(v), yamlx.FmtDur(b.Timeout))
				}
			}
		}
		if n := m.Get("turnaround"); n != nil {
			if v, ok := d.Duration(n, p+".turnaround", MinTurnaround, MaxTurnaround); ok {
				b.Turnaround = v
			}
		}
		out = append(out, b)
	}
	return out
}

// portKey names a port so that two spellings of one device node compare
// equal: the cleaned path, or the symlink's target when it exists
// (/dev/serial/by-id/... links to /dev/ttyUSB0).
func (d *decoder) portKey(s string) string {
	p := filepath.Clean(s)
	if !d.opts.skipFiles {
		if t, err := filepath.EvalSymlinks(p); err == nil {
			return t
		}
	}
	return p
}

func (d *decoder) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(d.opts.baseDir, p)
}

func (d *decoder) checkFile(n *yaml.Node, path, written, p string) {
	if d.opts.skipFiles {
		return
	}
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		d.Errorf(n, path, d.fileHint(written), "cannot use %s: %v", p, unwrapPath(err))
	case fi.IsDir():
		d.Errorf(n, path, "name a file", "%s is a folder", p)
	}
}

func (d *decoder) checkDir(n *yaml.Node, path, written, p string) {
	if d.opts.skipFiles {
		return
	}
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		d.Errorf(n, path, d.fileHint(written), "cannot use %s: %v", p, unwrapPath(err))
	case !fi.IsDir():
		d.Errorf(n, path, "name a folder", "%s is not a folder", p)
	}
}

// unwrapPath drops the path from an *os.PathError: the message names it already.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
