package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/payload"
)

// grafanaDashboard is the part of a dashboard's JSON the check reads.
type grafanaDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title      string `json:"title"`
		Datasource struct {
			Type string `json:"type"`
		} `json:"datasource"`
		Targets []struct {
			RawQuery bool   `json:"rawQuery"`
			Query    string `json:"query"`
		} `json:"targets"`
	} `json:"panels"`
}

// grafanaQuery replaces Grafana's macros and variables the way Grafana
// does for a 24 h range and "All" selected.
func grafanaQuery(q string) string {
	return strings.NewReplacer("$timeFilter", "time > now() - 24h", "$__interval", "10m", "$site", ".*", "$lot", ".*", "$gateway", ".*").Replace(q)
}

// TestGrafanaDashboards runs every query of every shipped dashboard (and of
// its variables) against a live InfluxDB that holds a little of each
// measurement, and wants each to answer with data: a misspelt measurement,
// field or tag, or a query InfluxDB refuses, fails here instead of showing
// an empty panel to a property manager.
func TestGrafanaDashboards(t *testing.T) {
	p := newPlatform(t)
	now := time.Now()
	ms := now.UnixMilli()
	p.write(lotPoints(now)...)
	p.write(
		fmt.Sprintf("parking_bay,site=north,gateway=gw-1,device=bay-001,lot=l1,zone=z1,bay=001 occupied=true,sensor_fault=false %d", ms-1000),
		fmt.Sprintf("door,site=north,gateway=gw-1,door=front state=\"held\",open=true %d", ms-1000),
		fmt.Sprintf("pv,site=north,gateway=gw-1,device=inv-1,model=103 ac_power_w=1000,ac_energy_wh=1000,temp_c=40,state=\"MPPT\" %d", ms-3_600_000),
		fmt.Sprintf("pv,site=north,gateway=gw-1,device=inv-1,model=103 ac_power_w=1500,ac_energy_wh=2500,temp_c=41,state=\"MPPT\" %d", ms-1000),
		fmt.Sprintf("pv_mppt,site=north,gateway=gw-1,device=inv-1,module=1 dc_voltage_v=380,dc_current_a=2,dc_power_w=760 %d", ms-1000),
		fmt.Sprintf("gateway_health,site=north,gateway=gw-1 uplink_connected=true,outbox_bytes=10i,outbox_unacked=2i,outbox_dropped=0i,bus_errors=1i,bus_utilization=0.4,devices_ok=3i,devices_failed=1i %d", ms-1000),
		fmt.Sprintf("fault,site=north,gateway=gw-1,device=bay-002,driver=modbus state=\"offline\",message=\"timeout\" %d", ms-1000),
		fmt.Sprintf("guidance_display,site=north,gateway=gw-1,device=sign-1,lot=l1,zone=z1 shown=7i,blank=false,faults=0i %d", ms-1000),
		fmt.Sprintf("fault,site=north,gateway=gw-1,device=sign-1,code=plugin_hung state=\"active\",message=\"3 calls cut\" %d", ms-1000),
	)
	files, err := filepath.Glob("grafana/*.json")
	if err != nil || len(files) < 5 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	uids := map[string]bool{}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var d grafanaDashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if d.UID == "" || d.Title == "" || len(d.Panels) == 0 || uids[d.UID] {
			t.Errorf("%s: want a unique uid, a title and panels", file)
		}
		uids[d.UID] = true
		var queries []string
		for _, v := range d.Templating.List {
			queries = append(queries, v.Query)
		}
		for _, pn := range d.Panels {
			if pn.Datasource.Type != "influxdb" || len(pn.Targets) == 0 {
				t.Errorf("%s: panel %q: want an influxdb data source and a query", file, pn.Title)
			}
			for _, tg := range pn.Targets {
				if !tg.RawQuery {
					t.Errorf("%s: panel %q: want a raw InfluxQL query", file, pn.Title)
				}
				queries = append(queries, tg.Query)
			}
		}
		for _, q := range queries {
			res, err := p.srv.influx.Query(context.Background(), grafanaQuery(q))
			if err != nil {
				t.Errorf("%s: %v", file, err)
				continue
			}
			if !hasValue(res[0]) {
				t.Errorf("%s: no data from %s", file, grafanaQuery(q))
			}
		}
	}
}

// hasValue reports whether every column of a result but time holds a
// value somewhere: a misspelt field in a query of several shows as a
// column of nulls.
func hasValue(r Result) bool {
	filled := map[string]bool{}
	for _, s := range r.Series {
		for _, c := range s.Columns {
			filled[c] = filled[c] || false
		}
		for _, row := range s.Values {
			for i, v := range row {
				if v != nil {
					filled[s.Columns[i]] = true
				}
			}
		}
	}
	delete(filled, "time")
	for _, ok := range filled {
		if !ok {
			return false
		}
	}
	return len(filled) > 0
}

// The area dashboard's "Free bays" sums each lot once: a lot counted at
// its lanes by its count, not its count plus its sensor zones, and agrees
// with the area view. The points are the ones cloudd derives (fleet.Parking)
// in the line protocol cloudd writes.
func TestGrafanaAreaFreeBaysCountsEachLotOnce(t *testing.T) {
	p := newPlatform(t)
	now := time.Now().Add(-time.Minute)
	at := func(s int) time.Time { return now.Add(time.Duration(s) * time.Millisecond) }
	var recs []payload.Record
	bay := func(lot, zone, dev string, occ bool, s int) payload.Record {
		tags := map[string]string{"device": dev, "bay": dev, "lot": lot}
		if zone != "" {
			tags["zone"] = zone
		}
		return payload.Record{Measurement: "parking_bay", Tags: tags, Fields: map[string]payload.Value{"occupied": payload.Bool(occ)}, Time: at(s)}
	}
	// c1: counted at its lanes (50 bays, 30 in), with a sensor zone "ev"
	// of 4 bays that reported first; c2: sensors, no zone, 5 bays in its
	// birth (one never reports), 2 occupied; c3: sensors in two zones.
	for i := range 4 {
		recs = append(recs, bay("c1", "ev", fmt.Sprintf("ev%d", i), i < 3, i))
	}
	for i := range 5 {
		recs = append(recs, bay("c2", "", fmt.Sprintf("c2-%d", i), i < 2, 10+i))
	}
	for i := range 6 {
		recs = append(recs, bay("c3", []string{"a", "b"}[i%2], fmt.Sprintf("c3-%d", i), i < 2, 20+i))
	}
	recs = append(recs, payload.Record{Measurement: "lane", Tags: map[string]string{"lane": "c1-in", "lot": "c1", "direction": "in", "event": "passed"},
		Fields: map[string]payload.Value{"occupied": payload.Int(30), "capacity": payload.Int(50), "free": payload.Int(20)}, Time: at(40)})
	var birth []payload.DeviceInfo
	for i := range 6 {
		birth = append(birth, payload.DeviceInfo{ID: fmt.Sprintf("c2-%d", i), Measurement: "parking_bay", Tags: map[string]string{"lot": "c2"}})
	}
	var parking fleet.Parking
	parking.SetCapacity(birth)
	var body []byte
	var keys influxw.Keys
	for _, r := range parking.Apply(nil, recs) {
		body = append(influxw.AppendLine(body, &keys, "east", "gw-5", &r), '\n')
	}
	resp, err := http.Post(p.influx.URL+"/write?db="+p.db, "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write: HTTP %d", resp.StatusCode)
	}
	const want = 20 + 3 + 4 // c1's count, c2 (6 bays, 2 occupied, 1 unknown), c3's zones a and b
	b, err := os.ReadFile("grafana/area.json")
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var q string
	for _, pn := range d.Panels {
		if pn.Title == "Free bays" && len(pn.Targets) == 1 {
			q = pn.Targets[0].Query
		}
	}
	if q == "" {
		t.Fatal(`area.json: no panel "Free bays" with one query`)
	}
	res, err := p.srv.influx.Query(context.Background(), grafanaQuery(q))
	if err != nil {
		t.Fatal(err)
	}
	if len(res[0].Series) != 1 || len(res[0].Series[0].Values) != 1 {
		t.Fatalf("Free bays: %+v, want one value", res[0])
	}
	if got, _ := res[0].Series[0].Float(0, "sum"); got != want {
		t.Errorf("Free bays panel sums %v, want %d", got, want)
	}
	p.online("east", "gw-5", birth...)
	code, page, _ := p.get(p.client("view"), "/")
	if code != 200 {
		t.Fatalf("area: HTTP %d\n%s", code, page)
	}
	if got := textOf(t, page, "free-total"); got != fmt.Sprint(want) {
		t.Errorf("area view shows %s free, the dashboard %d", got, want)
	}
}
