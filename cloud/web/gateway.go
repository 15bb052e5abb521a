package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/luling-edge/luling/cloud/command"
	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/payload"
)

// GatewayView is one gateway's health, devices and plugins.
type GatewayView struct {
	fleet.Gateway
	Health       map[string]float64 // the last gateway_health point's fields (booleans as 0/1)
	HealthTime   time.Time
	DeviceStates map[string]DeviceState // by device id, from the gateway's device fault events
	Plugins      []PluginState          // by subject, from the plugin host's fault events
}

// Has tells whether the last health point carries field f (a gateway older
// than the field leaves it out, which is not the same as 0).
func (v *GatewayView) Has(f string) bool {
	_, ok := v.Health[f]
	return ok
}

// DeviceState is a device's last fault event.
type DeviceState struct {
	State, Message string
	Since          time.Time
}

// PluginState is one plugin's (a plugin device's or a rule plugin's)
// state: the plugin host's codes whose last event is active, or none when
// it runs.
type PluginState struct {
	Subject string // the device or rule name
	Rule    bool   // a rule plugin
	Active  []PluginFault
}

// PluginFault is a plugin host code whose last event is active.
type PluginFault struct {
	Code, Message string
	Since         time.Time
}

// healthFields are the gateway_health fields the view shows.
var healthFields = []string{"uplink_connected", "outbox_bytes", "outbox_unacked", "outbox_dropped", "bus_errors", "bus_utilization", "devices_ok", "devices_failed", "rss_bytes", "goroutines"}

// gatewayQueries are the view's three sections, one query each: the last
// health point (a single selector brings the point's other fields and its
// time), the last device fault event per device (the gateway's have no
// code), and the last plugin host event per plugin and code.
func gatewayQueries(site, gw string) []string {
	where := fmt.Sprintf(`"site" = %s AND "gateway" = %s`, quote(site), quote(gw))
	sel := []string{`last("uplink_connected") AS "uplink_connected"`}
	for _, f := range healthFields[1:] {
		sel = append(sel, fmt.Sprintf(`%q`, f))
	}
	return []string{
		`SELECT ` + strings.Join(sel, ", ") + ` FROM "gateway_health" WHERE ` + where + ` AND time > now() - 1d`,
		`SELECT last("state") AS "state", "message" FROM "fault" WHERE ` + where + ` AND "code" = '' AND time > now() - 30d GROUP BY "device"`,
		`SELECT last("state") AS "state", "message" FROM "fault" WHERE ` + where + ` AND "code" =~ /^plugin_/ AND time > now() - 30d GROUP BY "device", "rule", "code"`,
	}
}

// errNoGateway is a gateway the fleet does not know.
var errNoGateway = errors.New("gateway not known")

func (s *Server) gateway(ctx context.Context, site, gw string) (*GatewayView, error) {
	g, ok := s.fleet.Gateway(site, gw)
	if !ok {
		return nil, fmt.Errorf("gateway %s/%s: %w", site, gw, errNoGateway)
	}
	res, err := s.influx.Query(ctx, gatewayQueries(site, gw)...)
	if err != nil {
		return nil, err
	}
	v := &GatewayView{Gateway: g, Health: map[string]float64{}, DeviceStates: map[string]DeviceState{}}
	for _, ser := range res[0].Series {
		for _, f := range healthFields {
			if x, ok := ser.Float(0, f); ok {
				v.Health[f] = x
			}
		}
		v.HealthTime = ser.Time(0)
	}
	for _, ser := range res[1].Series {
		if d := ser.Tags["device"]; d != "" {
			v.DeviceStates[d] = DeviceState{State: ser.String(0, "state"), Message: ser.String(0, "message"), Since: ser.Time(0)}
		}
	}
	v.Plugins = pluginStates(g.Devices, res[2].Series)
	sort.Slice(v.Devices, func(i, j int) bool { return v.Devices[i].ID < v.Devices[j].ID })
	return v, nil
}

// pluginDriver is the driver name of plugin devices in a birth
// (plugins/host.DriverName; cloudd does not link the plugin host).
const pluginDriver = "plugin"

// pluginStates joins the birth's plugin devices (running unless a fault
// says otherwise) and every plugin the host raised a fault for.
func pluginStates(devices []payload.DeviceInfo, series []Series) []PluginState {
	byName := map[string]*PluginState{}
	get := func(name string, rule bool) *PluginState {
		k := fmt.Sprint(rule, name)
		if byName[k] == nil {
			byName[k] = &PluginState{Subject: name, Rule: rule}
		}
		return byName[k]
	}
	for _, d := range devices {
		if d.Driver == pluginDriver {
			get(d.ID, false)
		}
	}
	for _, ser := range series {
		name, rule := ser.Tags["device"], false
		if name == "" {
			name, rule = ser.Tags["rule"], true
		}
		if name == "" {
			continue
		}
		p := get(name, rule)
		if ser.String(0, "state") == "active" {
			p.Active = append(p.Active, PluginFault{Code: ser.Tags["code"], Message: ser.String(0, "message"), Since: ser.Time(0)})
		}
	}
	out := make([]PluginState, 0, len(byName))
	for _, p := range byName {
		sort.Slice(p.Active, func(i, j int) bool { return p.Active[i].Code < p.Active[j].Code })
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Rule != out[j].Rule {
			return !out[i].Rule
		}
		return out[i].Subject < out[j].Subject
	})
	return out
}

// Commander sends commands to gateways (cloud/command.Service).
type Commander interface {
	Send(ctx context.Context, site, gw string, req command.Request) (command.Outcome, error)
}

// commandForm is what the gateway view's command form posts.
type commandForm struct {
	Name                 string
	Device, Point, Value string // device.write
	Version, Credentials string // credentials.sync
}

// commands the form offers, with what each does.
var formCommands = []struct{ Name, Help string }{
	{"ping", "answer with the gateway's clock"},
	{"config.reload", "validate the configuration on disk and apply it if valid"},
	{"device.write", "write a device's output or LED (device, point, value)"},
	{"credentials.sync", "replace the door controllers' credential set (version, credentials JSON)"},
}

// request turns the form into a command request; the error names the
// field that is wrong.
func (f commandForm) request() (command.Request, error) {
	req := command.Request{Name: f.Name, Timeout: command.Duration(15 * time.Second)}
	switch f.Name {
	case "ping", "config.reload":
	case "device.write":
		if f.Device == "" || f.Point == "" || f.Value == "" {
			return req, errors.New("device.write needs a device, a point and a value")
		}
		req.Args = map[string]any{"device": f.Device, "point": f.Point, "value": formValue(f.Value)}
	case "credentials.sync":
		v, err := strconv.ParseInt(f.Version, 10, 64)
		if err != nil || v < 0 {
			return req, fmt.Errorf("credentials.sync: version %q: want a whole number", f.Version)
		}
		if !json.Valid([]byte(f.Credentials)) {
			return req, errors.New("credentials.sync: credentials: want a JSON array of credentials")
		}
		req.Args = map[string]any{"version": json.Number(strconv.FormatInt(v, 10)), "credentials": f.Credentials}
	default:
		return req, fmt.Errorf("command %q: want one of ping, config.reload, device.write, credentials.sync", f.Name)
	}
	return req, nil
}

// formValue reads a form's value as the JSON API would: true, false and
// numbers as such, anything else as a string.
func formValue(s string) any {
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return json.Number(s)
	}
	return s
}

// CommandResult is what the view shows after a command: the reply, or why
// there is none.
type CommandResult struct {
	ID, Name string
	Status   string // the reply's status, or "failed" when there is no reply
	Message  string
	Reply    string // the reply, indented JSON
}

func (s *Server) sendCommand(ctx context.Context, site, gw string, req command.Request) CommandResult {
	out, err := s.cmds.Send(ctx, site, gw, req)
	r := CommandResult{ID: out.ID, Name: req.Name}
	if err != nil {
		r.Status, r.Message = "failed", err.Error()
		return r
	}
	var reply struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	json.Unmarshal(out.Reply, &reply)
	r.Status, r.Message = reply.Status, reply.Message
	var pretty map[string]any
	if json.Unmarshal(out.Reply, &pretty) == nil {
		b, _ := json.MarshalIndent(pretty, "", "  ")
		r.Reply = string(b)
	} else {
		r.Reply = string(out.Reply)
	}
	return r
}
