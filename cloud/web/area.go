package web

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/luling-edge/luling/cloud/fleet"
)

// Area is the whole area at a glance: every site with its lots, gateways,
// alerts, solar and access figures. It is also the JSON of GET
// /api/v1/sites.
type Area struct {
	Updated time.Time `json:"updated"`
	Totals  Site      `json:"totals"`
	Sites   []Site    `json:"sites"`
}

// Site sums one site (or, as Area.Totals, all of them).
type Site struct {
	Name            string         `json:"name,omitempty"`
	Free            int            `json:"free_bays"`
	Capacity        int            `json:"capacity"`
	Lots            []Lot          `json:"lots,omitempty"`
	GatewaysOnline  int            `json:"gateways_online"`
	GatewaysOffline int            `json:"gateways_offline"`
	Alerts          map[string]int `json:"alerts_24h"` // by severity
	PowerW          float64        `json:"pv_power_w"`
	EnergyTodayWh   float64        `json:"pv_energy_today_wh"`
	Granted         int            `json:"access_granted_1h"`
	Denied          int            `json:"access_denied_1h"`
	DoorAlarms      int            `json:"door_alarms_1h"` // forced or held open
}

// Lot is one parking lot's occupancy, by zone.
type Lot struct {
	Site     string `json:"site"`
	Name     string `json:"lot"`
	Free     int    `json:"free_bays"`
	Capacity int    `json:"capacity"`
	Zones    []Zone `json:"zones"`
}

// Zone is one zone of a lot.
type Zone struct {
	Name     string `json:"zone"`
	Free     int    `json:"free_bays"`
	Capacity int    `json:"capacity"`
}

// Severities in the order the views show them.
var severities = []string{"critical", "warning", "info"}

// areaQueries are the area view's statements, sent as one request. Each
// reads the newest value per series (last) or a count over a short window,
// grouped by the tags the view sums over. midnight starts "today".
func areaQueries(midnight time.Time) []string {
	return []string{
		`SELECT last("free") AS "free", last("capacity") AS "capacity", last("source") AS "source" FROM "parking_lot" WHERE time > now() - 30d GROUP BY "site", "gateway", "lot", "zone"`,
		`SELECT count("message") AS "n" FROM "alert" WHERE time > now() - 24h GROUP BY "site", "severity"`,
		`SELECT last("ac_power_w") AS "power" FROM "pv" WHERE time > now() - 15m GROUP BY "site", "gateway", "device"`,
		// The meter's reading now less its first reading today: last and
		// first seek, where spread would read every point of the day.
		fmt.Sprintf(`SELECT last("ac_energy_wh") - first("ac_energy_wh") AS "energy" FROM "pv" WHERE time >= '%s' GROUP BY "site", "gateway", "device"`, midnight.UTC().Format(time.RFC3339)),
		`SELECT count("reason") AS "n" FROM "access" WHERE time > now() - 1h GROUP BY "site", "result"`,
		`SELECT count("state") AS "n" FROM "door" WHERE time > now() - 1h AND ("state" = 'forced' OR "state" = 'held') GROUP BY "site"`,
	}
}

// area reads the area from InfluxDB and the fleet; callers at the same
// time share one read.
func (s *Server) area(ctx context.Context) (*Area, error) {
	return s.areas.do(ctx, "area", s.readArea)
}

// readArea reads the area: one statement per section, run at once.
func (s *Server) readArea(ctx context.Context) (*Area, error) {
	now := s.now()
	y, m, d := now.Date()
	res, err := s.influx.QueryParallel(ctx, areaQueries(time.Date(y, m, d, 0, 0, 0, 0, now.Location()))...)
	if err != nil {
		return nil, err
	}
	sites := map[string]*Site{}
	site := func(name string) *Site {
		st := sites[name]
		if st == nil {
			st = &Site{Name: name, Alerts: map[string]int{}}
			sites[name] = st
		}
		return st
	}
	lots := map[[2]string]*Lot{}
	// A lot counted at its lanes has a whole-lot point (no zone, source
	// counting or combined): it is the lot's total, and its zones' bay
	// sensors only show the zones.
	counted := map[[2]string][2]int{}
	for _, ser := range res[0].Series {
		free, _ := ser.Float(0, "free")
		capacity, _ := ser.Float(0, "capacity")
		k := [2]string{ser.Tags["site"], ser.Tags["lot"]}
		l := lots[k]
		if l == nil {
			l = &Lot{Site: k[0], Name: k[1]}
			lots[k] = l
		}
		if countedSeries(&ser) {
			c := counted[k]
			counted[k] = [2]int{c[0] + int(free), c[1] + int(capacity)}
			continue
		}
		l.Free += int(free)
		l.Capacity += int(capacity)
		l.Zones = addZone(l.Zones, ser.Tags["zone"], int(free), int(capacity))
	}
	for k, c := range counted {
		lots[k].Free, lots[k].Capacity = c[0], c[1]
	}
	for _, l := range lots {
		st := site(l.Site)
		sort.Slice(l.Zones, func(i, j int) bool { return l.Zones[i].Name < l.Zones[j].Name })
		st.Lots = append(st.Lots, *l)
		st.Free += l.Free
		st.Capacity += l.Capacity
	}
	for _, ser := range res[1].Series {
		n, _ := ser.Float(0, "n")
		site(ser.Tags["site"]).Alerts[ser.Tags["severity"]] += int(n)
	}
	for _, ser := range res[2].Series {
		p, _ := ser.Float(0, "power")
		site(ser.Tags["site"]).PowerW += p
	}
	for _, ser := range res[3].Series {
		e, _ := ser.Float(0, "energy")
		site(ser.Tags["site"]).EnergyTodayWh += e
	}
	for _, ser := range res[4].Series {
		n, _ := ser.Float(0, "n")
		if ser.Tags["result"] == "granted" {
			site(ser.Tags["site"]).Granted += int(n)
		} else {
			site(ser.Tags["site"]).Denied += int(n)
		}
	}
	for _, ser := range res[5].Series {
		n, _ := ser.Float(0, "n")
		site(ser.Tags["site"]).DoorAlarms += int(n)
	}
	for _, g := range s.fleet.Gateways() {
		if g.Online {
			site(g.Site).GatewaysOnline++
		} else {
			site(g.Site).GatewaysOffline++
		}
	}
	a := &Area{Updated: now, Totals: Site{Alerts: map[string]int{}}}
	for _, st := range sites {
		sort.Slice(st.Lots, func(i, j int) bool { return st.Lots[i].Name < st.Lots[j].Name })
		a.Sites = append(a.Sites, *st)
		t := &a.Totals
		t.Free += st.Free
		t.Capacity += st.Capacity
		t.GatewaysOnline += st.GatewaysOnline
		t.GatewaysOffline += st.GatewaysOffline
		for k, v := range st.Alerts {
			t.Alerts[k] += v
		}
		t.PowerW += st.PowerW
		t.EnergyTodayWh += st.EnergyTodayWh
		t.Granted += st.Granted
		t.Denied += st.Denied
		t.DoorAlarms += st.DoorAlarms
	}
	sort.Slice(a.Sites, func(i, j int) bool { return a.Sites[i].Name < a.Sites[j].Name })
	return a, nil
}

// addZone adds free and capacity to zone name in zs (one zone may be
// reported by several gateways).
func addZone(zs []Zone, name string, free, capacity int) []Zone {
	for i := range zs {
		if zs[i].Name == name {
			zs[i].Free += free
			zs[i].Capacity += capacity
			return zs
		}
	}
	return append(zs, Zone{Name: name, Free: free, Capacity: capacity})
}

// Fleet is what the web platform reads of cloudd's fleet state.
type Fleet interface {
	Gateways() []fleet.Gateway
	Gateway(site, gw string) (fleet.Gateway, bool)
}
