package web

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Bay states on the lot view.
const (
	BayFree     = "free"
	BayOccupied = "occupied"
	BayFault    = "fault"   // the sensor reports a fault
	BayUnknown  = "unknown" // configured, but no reading yet or none for StaleAfter
)

// LotView is one lot: its zones with their bays, and the occupancy plot.
type LotView struct {
	Site, Name string
	Free       int
	Capacity   int
	Zones      []ZoneView
	Signs      []SignView
	Range      string   // "24h" or "7d"
	Plot       PlotData // occupied bays over Range
}

// ZoneView is a zone and its bays.
type ZoneView struct {
	Name     string
	Free     int
	Capacity int
	Bays     []BayView
}

// BayView is one bay.
type BayView struct {
	Bay, Device, Gateway string
	State                string
	Since                time.Time // time of the last reading; zero when none
}

// SignView is a guidance sign of the lot (the guidance_display
// measurement of the guidance-display plugin) and what it shows.
type SignView struct {
	Device, Gateway, Zone string
	Shown                 int  // the count it shows
	Blank                 bool // it shows nothing
	Faults                int  // fault bits it reports
	Since                 time.Time
}

// PlotData is a time series for uPlot: seconds since the epoch, and values
// (nil for a gap).
type PlotData struct {
	T []int64    `json:"t"`
	V []*float64 `json:"v"`
}

// StaleAfter is how old a bay's last reading may be before the bay shows
// as unknown. Gateways repeat an unchanged bay every max_silence (1 h by
// default), so two of those missed means the sensor or its gateway is gone.
const StaleAfter = 150 * time.Minute

func lotQueries(site, lot string) []string {
	where := fmt.Sprintf(`"site" = %s AND "lot" = %s`, quote(site), quote(lot))
	return []string{
		`SELECT last("occupied") AS "occupied" FROM "parking_bay" WHERE ` + where + ` AND time > now() - 30d GROUP BY "gateway", "zone", "bay", "device"`,
		`SELECT last("sensor_fault") AS "fault" FROM "parking_bay" WHERE ` + where + ` AND time > now() - 30d GROUP BY "device"`,
		`SELECT last("free") AS "free", last("capacity") AS "capacity", last("source") AS "source" FROM "parking_lot" WHERE ` + where + ` AND time > now() - 30d GROUP BY "gateway", "zone"`,
		`SELECT last("shown") AS "shown", last("blank") AS "blank", last("faults") AS "faults" FROM "guidance_display" WHERE ` + where + ` AND time > now() - 1d GROUP BY "gateway", "device", "zone"`,
		`SELECT last("blank") AS "t" FROM "guidance_display" WHERE ` + where + ` AND time > now() - 1d GROUP BY "gateway", "device"`,
	}
}

// lotPlotQuery is occupied bays per zone and gateway over the range, in
// steps; the view adds the series up.
func lotPlotQuery(site, lot, rng string) string {
	span, step := "24h", "10m"
	if rng == "7d" {
		span, step = "7d", "1h"
	}
	return fmt.Sprintf(`SELECT last("occupied") AS "occupied", last("source") AS "source" FROM "parking_lot" WHERE "site" = %s AND "lot" = %s AND time > now() - %s GROUP BY time(%s), "gateway", "zone" fill(previous)`,
		quote(site), quote(lot), span, step)
}

// lot reads the live part of the lot view: zones and bays.
func (s *Server) lot(ctx context.Context, site, lot string) (*LotView, error) {
	res, err := s.influx.Query(ctx, lotQueries(site, lot)...)
	if err != nil {
		return nil, err
	}
	now := s.now()
	faults := map[string]bool{}
	for _, ser := range res[1].Series {
		if f, ok := ser.Bool(0, "fault"); ok && f {
			faults[ser.Tags["device"]] = true
		}
	}
	v := &LotView{Site: site, Name: lot}
	zones := map[string]*ZoneView{}
	zone := func(name string) *ZoneView {
		z := zones[name]
		if z == nil {
			z = &ZoneView{Name: name}
			zones[name] = z
		}
		return z
	}
	seen := map[string]bool{}
	for _, ser := range res[0].Series {
		b := BayView{Bay: ser.Tags["bay"], Device: ser.Tags["device"], Gateway: ser.Tags["gateway"], Since: ser.Time(0)}
		occ, ok := ser.Bool(0, "occupied")
		switch {
		case faults[b.Device]:
			b.State = BayFault
		case !ok || now.Sub(b.Since) > StaleAfter:
			b.State = BayUnknown
		case occ:
			b.State = BayOccupied
		default:
			b.State = BayFree
		}
		seen[b.Gateway+"/"+b.Device] = true
		z := zone(ser.Tags["zone"])
		z.Bays = append(z.Bays, b)
	}
	// Bays a gateway has configured but that never reported.
	for _, g := range s.fleet.Gateways() {
		if g.Site != site {
			continue
		}
		for _, d := range g.Devices {
			if d.Measurement != "parking_bay" || d.Tags["lot"] != lot || seen[g.Gateway+"/"+d.ID] {
				continue
			}
			z := zone(d.Tags["zone"])
			z.Bays = append(z.Bays, BayView{Bay: d.Tags["bay"], Device: d.ID, Gateway: g.Gateway, State: BayUnknown})
		}
	}
	var counted [2]int // a lot counted at its lanes: its total is the count
	isCounted := false
	for _, ser := range res[2].Series {
		free, _ := ser.Float(0, "free")
		capacity, _ := ser.Float(0, "capacity")
		if countedSeries(&ser) {
			isCounted = true
			counted[0] += int(free)
			counted[1] += int(capacity)
			continue
		}
		z := zone(ser.Tags["zone"])
		z.Free += int(free)
		z.Capacity += int(capacity)
		v.Free += int(free)
		v.Capacity += int(capacity)
	}
	if isCounted {
		v.Free, v.Capacity = counted[0], counted[1]
	}
	since := map[string]time.Time{}
	for _, ser := range res[4].Series {
		since[ser.Tags["gateway"]+"/"+ser.Tags["device"]] = ser.Time(0)
	}
	for _, ser := range res[3].Series {
		shown, _ := ser.Float(0, "shown")
		blank, _ := ser.Bool(0, "blank")
		faults, _ := ser.Float(0, "faults")
		v.Signs = append(v.Signs, SignView{Device: ser.Tags["device"], Gateway: ser.Tags["gateway"], Zone: ser.Tags["zone"],
			Shown: int(shown), Blank: blank, Faults: int(faults), Since: since[ser.Tags["gateway"]+"/"+ser.Tags["device"]]})
	}
	sort.Slice(v.Signs, func(i, j int) bool { return v.Signs[i].Device < v.Signs[j].Device })
	for _, z := range zones {
		sort.Slice(z.Bays, func(i, j int) bool {
			if z.Bays[i].Bay != z.Bays[j].Bay {
				return z.Bays[i].Bay < z.Bays[j].Bay
			}
			return z.Bays[i].Device < z.Bays[j].Device
		})
		v.Zones = append(v.Zones, *z)
	}
	sort.Slice(v.Zones, func(i, j int) bool { return v.Zones[i].Name < v.Zones[j].Name })
	return v, nil
}

// countedSeries reports whether a parking_lot series is a lot's count at
// its lanes (no zone, source counting or combined) rather than bay
// sensors.
func countedSeries(ser *Series) bool {
	if ser.Tags["zone"] != "" {
		return false
	}
	for row := len(ser.Values) - 1; row >= 0; row-- {
		if src := ser.String(row, "source"); src != "" {
			return src == "counting" || src == "combined"
		}
	}
	return false
}

// lotPlot reads the occupancy plot: occupied bays of the whole lot, the
// sum of its zones' series, or the lot's count at its lanes when it has one.
func (s *Server) lotPlot(ctx context.Context, site, lot, rng string) (PlotData, error) {
	res, err := s.influx.Query(ctx, lotPlotQuery(site, lot, rng))
	if err != nil {
		return PlotData{}, err
	}
	sum := map[int64]float64{}
	has := map[int64]bool{}
	counted := false
	for i := range res[0].Series {
		counted = counted || countedSeries(&res[0].Series[i])
	}
	for _, ser := range res[0].Series {
		if counted && !countedSeries(&ser) {
			continue // the count covers the whole lot, zones included
		}
		for row := range ser.Values {
			t := ser.Time(row).Unix()
			if _, ok := sum[t]; !ok {
				sum[t] = 0
			}
			if f, ok := ser.Float(row, "occupied"); ok {
				sum[t] += f
				has[t] = true
			}
		}
	}
	var p PlotData
	for t := range sum {
		p.T = append(p.T, t)
	}
	sort.Slice(p.T, func(i, j int) bool { return p.T[i] < p.T[j] })
	for _, t := range p.T {
		if has[t] {
			f := sum[t]
			p.V = append(p.V, &f)
		} else {
			p.V = append(p.V, nil)
		}
	}
	return p, nil
}
