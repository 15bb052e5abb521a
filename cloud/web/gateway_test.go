package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/payload"
)

// gatewayData writes two health points of gw-1 (the view must show the
// newer), device faults (bay-001 went offline and came back, rd-2 is
// offline, an implausible reading of bay-001 that is no device state), the
// plugin host's faults (sign-1 crashed and runs again but is hung now, a
// rule plugin's config is refused) and another gateway's points, which
// must not leak in.
func gatewayData(p *platform) {
	ms := time.Now().UnixMilli()
	p.write(
		fmt.Sprintf("gateway_health,site=north,gateway=gw-1 uplink_connected=true,outbox_bytes=1048576i,outbox_unacked=5i,outbox_dropped=0i,bus_errors=1i,bus_utilization=0.1,devices_ok=3i,devices_failed=0i,rss_bytes=1i,goroutines=10i %d", ms-60000),
		fmt.Sprintf("gateway_health,site=north,gateway=gw-1 uplink_connected=false,outbox_bytes=3145728i,outbox_unacked=42i,outbox_dropped=7i,bus_errors=9i,bus_utilization=0.734,devices_ok=2i,devices_failed=1i,rss_bytes=20971520i,goroutines=31i %d", ms-5000),
		fmt.Sprintf("gateway_health,site=north,gateway=gw-2 uplink_connected=true,outbox_bytes=0i,outbox_unacked=0i,outbox_dropped=0i,bus_errors=0i,bus_utilization=0.99,devices_ok=1i,devices_failed=0i,rss_bytes=1i,goroutines=1i %d", ms-1000),
		fmt.Sprintf("fault,site=north,gateway=gw-1,device=bay-001,driver=modbus,bus=rs485-1 state=\"offline\",message=\"timeout\" %d", ms-50000),
		fmt.Sprintf("fault,site=north,gateway=gw-1,device=bay-001,driver=modbus,bus=rs485-1 state=\"online\",message=\"answers again\" %d", ms-40000),
		fmt.Sprintf("fault,site=north,gateway=gw-1,device=bay-001,code=implausible,field=distance_cm state=\"active\",message=\"out of range\",value=900,count=1i %d", ms-1000),
		fmt.Sprintf("fault,site=north,gateway=gw-1,device=rd-2,driver=osdp,bus=rs485-2 state=\"offline\",message=\"no reply\" %d", ms-30000),
		fmt.Sprintf("fault,site=north,gateway=gw-2,device=rd-2,driver=osdp,bus=rs485-2 state=\"online\",message=\"fine\" %d", ms-1000),
		fmt.Sprintf("fault,site=north,gateway=gw-1,device=sign-1,code=plugin_crashed state=\"active\",message=\"connection lost\" %d", ms-20000),
		fmt.Sprintf("fault,site=north,gateway=gw-1,device=sign-1,code=plugin_crashed state=\"cleared\",message=\"running\" %d", ms-15000),
		fmt.Sprintf("fault,site=north,gateway=gw-1,device=sign-1,code=plugin_hung state=\"active\",message=\"3 calls cut\" %d", ms-10000),
		fmt.Sprintf("fault,site=north,gateway=gw-1,rule=guidance-north,code=plugin_config state=\"active\",message=\"unknown key\" %d", ms-10000),
		fmt.Sprintf("fault,site=north,gateway=gw-2,device=sign-1,code=plugin_hung state=\"cleared\",message=\"running\" %d", ms-1000),
	)
	p.online("north", "gw-1",
		payload.DeviceInfo{ID: "bay-001", Driver: "modbus", Measurement: "parking_bay"},
		payload.DeviceInfo{ID: "rd-2", Driver: "osdp", Measurement: "access"},
		payload.DeviceInfo{ID: "sign-1", Driver: "plugin", Measurement: "guidance_display"},
		payload.DeviceInfo{ID: "sign-2", Driver: "plugin", Measurement: "guidance_display"})
	p.online("north", "gw-2")
}

func TestGatewayViewHealth(t *testing.T) {
	p := newPlatform(t)
	gatewayData(p)
	code, body, _ := p.get(p.client("view"), "/gateways/north/gw-1")
	if code != http.StatusOK {
		t.Fatalf("HTTP %d\n%s", code, body)
	}
	for id, want := range map[string]string{
		"uplink":         "down",
		"outbox-unacked": "42",
		"outbox-bytes":   "3.0 MiB",
		"outbox-dropped": "7",
		"bus-util":       "73 %",
		"bus-errors":     "9",
		"devices-ok":     "2",
		"devices-failed": "1 failing",
		"dev-bay-001":    "ok",
		"plugin-sign-2":  "running",
	} {
		if got := textOf(t, body, id); got != want {
			t.Errorf("#%s = %q, want %q", id, got, want)
		}
	}
	if !strings.Contains(body, `value="0.734"`) {
		t.Error("the bus utilisation bar does not show 0.734")
	}
	// The times shown are the fault events' own: "... since 30s ago".
	for id, tc := range map[string]struct {
		prefix string
		ago    time.Duration
	}{
		"dev-rd-2":              {"offline since ", 30 * time.Second},
		"plugin-sign-1":         {"plugin_hung since ", 10 * time.Second}, // the crash was cleared
		"plugin-guidance-north": {"plugin_config since ", 10 * time.Second},
		"health-age":            {"", 5 * time.Second},
	} {
		got := textOf(t, body, id)
		d, err := time.ParseDuration(strings.TrimSuffix(strings.TrimPrefix(got, tc.prefix), " ago"))
		if !strings.HasPrefix(got, tc.prefix) || err != nil || d < tc.ago || d > tc.ago+time.Minute {
			t.Errorf("#%s = %q, want %q and %v ago (a little more on a slow machine)", id, got, tc.prefix, tc.ago)
		}
	}
	// A device's state comes from the gateway's own events only, not from
	// the codes a driver or the plugin host raise for it.
	v, err := p.srv.gateway(context.Background(), "north", "gw-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := v.DeviceStates["bay-001"]; got.State != "online" || got.Message != "answers again" {
		t.Errorf("bay-001: %+v, want its online event", got)
	}
	if got := v.DeviceStates["sign-1"]; got.State != "" {
		t.Errorf("sign-1: %+v, want no device state from plugin host codes", got)
	}
	if !strings.Contains(body, "plugin_config: unknown key") {
		t.Error("the rule plugin's fault message is not shown")
	}
	if !strings.Contains(body, `sse-connect="/live/gateways/north/gw-1"`) {
		t.Error("the gateway page does not connect to its live feed")
	}
	// A gateway older than bus_utilization, and one that never reported
	// health: no number is made up for them.
	p.write(fmt.Sprintf("gateway_health,site=north,gateway=gw-3 uplink_connected=true,outbox_bytes=0i,outbox_unacked=0i,outbox_dropped=0i,bus_errors=0i,devices_ok=1i,devices_failed=0i,rss_bytes=1i %d", time.Now().UnixMilli()))
	p.online("north", "gw-3")
	p.online("north", "gw-4")
	_, old, _ := p.get(p.client("view"), "/gateways/north/gw-3")
	if got, up := textOf(t, old, "bus-util"), textOf(t, old, "uplink"); got != "–" || up != "up" {
		t.Errorf("gateway without bus_utilization: bus %q, uplink %q; want – and up", got, up)
	}
	_, none, _ := p.get(p.client("view"), "/gateways/north/gw-4")
	if got := textOf(t, none, "uplink"); got != "unknown" {
		t.Errorf("gateway without health: uplink %q, want unknown", got)
	}
	if code, _, _ := p.get(p.client("view"), "/live/gateways/north/gw-9"); code != http.StatusNotFound {
		t.Errorf("live feed of an unknown gateway: HTTP %d, want 404", code)
	}
}

func TestGatewayViewLive(t *testing.T) {
	p := newPlatform(t)
	gatewayData(p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.http.URL+"/live/gateways/north/gw-1", nil)
	resp, err := p.client("view").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("live: HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ev := readEvents(resp.Body, "gateway")
	next := func(id, want string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for got := ""; got != want; {
			select {
			case frag, ok := <-ev:
				if !ok {
					t.Fatal("stream ended")
				}
				got = textOf(t, frag, id)
			case <-deadline:
				t.Fatalf("#%s never became %q", id, want)
			}
		}
	}
	next("bus-util", "73 %")
	p.write(fmt.Sprintf("gateway_health,site=north,gateway=gw-1 uplink_connected=true,outbox_bytes=0i,outbox_unacked=0i,outbox_dropped=7i,bus_errors=9i,bus_utilization=0.25,devices_ok=3i,devices_failed=0i,rss_bytes=1i,goroutines=31i %d", time.Now().UnixMilli()),
		fmt.Sprintf("fault,site=north,gateway=gw-1,device=rd-2,driver=osdp,bus=rs485-2 state=\"online\",message=\"answers again\" %d", time.Now().UnixMilli()))
	next("bus-util", "25 %")
	next("dev-rd-2", "ok")
	next("uplink", "up")
}
