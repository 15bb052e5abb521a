package web

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// SolarView is the BIPV view: inverters, their MPPT strings and the yield.
type SolarView struct {
	Inverters     []InverterView
	PowerW        float64
	EnergyTodayWh float64
	EnergyMonthWh float64
	Plot          PlotData // AC power of all inverters over 24 h, kW
}

// InverterView is one inverter.
type InverterView struct {
	Site, Gateway, Device, Model string
	PowerW, TempC                float64
	State                        string // the inverter's operating state (SunSpec), e.g. MPPT or FAULT
	EnergyTodayWh, EnergyMonthWh float64
	Since                        time.Time
	Strings                      []MPPTView
}

// MPPTView is one MPPT string of an inverter.
type MPPTView struct {
	Module                     string
	VoltageV, CurrentA, PowerW float64
}

func solarQueries(midnight, month time.Time) []string {
	return []string{
		`SELECT last("ac_power_w") AS "power", last("temp_c") AS "temp", last("state") AS "state" FROM "pv" WHERE time > now() - 1d GROUP BY "site", "gateway", "device", "model"`,
		`SELECT last("ac_power_w") AS "t" FROM "pv" WHERE time > now() - 1d GROUP BY "site", "gateway", "device"`,
		fmt.Sprintf(`SELECT last("ac_energy_wh") - first("ac_energy_wh") AS "e" FROM "pv" WHERE time >= '%s' GROUP BY "site", "gateway", "device"`, midnight.UTC().Format(time.RFC3339)),
		fmt.Sprintf(`SELECT last("ac_energy_wh") - first("ac_energy_wh") AS "e" FROM "pv" WHERE time >= '%s' GROUP BY "site", "gateway", "device"`, month.UTC().Format(time.RFC3339)),
		`SELECT last("dc_voltage_v") AS "v", last("dc_current_a") AS "a", last("dc_power_w") AS "p" FROM "pv_mppt" WHERE time > now() - 1d GROUP BY "site", "gateway", "device", "module"`,
		`SELECT sum("p") / 1000 AS "kw" FROM (SELECT mean("ac_power_w") AS "p" FROM "pv" WHERE time > now() - 24h GROUP BY time(10m), "site", "gateway", "device") WHERE time > now() - 24h GROUP BY time(10m)`,
	}
}

func (s *Server) solar(ctx context.Context) (*SolarView, error) {
	now := s.now()
	y, m, d := now.Date()
	res, err := s.influx.QueryParallel(ctx, solarQueries(time.Date(y, m, d, 0, 0, 0, 0, now.Location()), time.Date(y, m, 1, 0, 0, 0, 0, now.Location()))...)
	if err != nil {
		return nil, err
	}
	key := func(t map[string]string) string { return t["site"] + "/" + t["gateway"] + "/" + t["device"] }
	invs := map[string]*InverterView{}
	for _, ser := range res[0].Series {
		p, _ := ser.Float(0, "power")
		tc, _ := ser.Float(0, "temp")
		invs[key(ser.Tags)] = &InverterView{Site: ser.Tags["site"], Gateway: ser.Tags["gateway"], Device: ser.Tags["device"], Model: ser.Tags["model"],
			PowerW: p, TempC: tc, State: ser.String(0, "state")}
	}
	for _, ser := range res[1].Series {
		if inv := invs[key(ser.Tags)]; inv != nil {
			inv.Since = ser.Time(0)
		}
	}
	for i, dst := range []func(*InverterView, float64){
		func(inv *InverterView, e float64) { inv.EnergyTodayWh = e },
		func(inv *InverterView, e float64) { inv.EnergyMonthWh = e },
	} {
		for _, ser := range res[2+i].Series {
			if inv := invs[key(ser.Tags)]; inv != nil {
				e, _ := ser.Float(0, "e")
				dst(inv, e)
			}
		}
	}
	for _, ser := range res[4].Series {
		if inv := invs[key(ser.Tags)]; inv != nil {
			v, _ := ser.Float(0, "v")
			a, _ := ser.Float(0, "a")
			p, _ := ser.Float(0, "p")
			inv.Strings = append(inv.Strings, MPPTView{Module: ser.Tags["module"], VoltageV: v, CurrentA: a, PowerW: p})
		}
	}
	v := &SolarView{}
	for _, inv := range invs {
		sort.Slice(inv.Strings, func(i, j int) bool { return inv.Strings[i].Module < inv.Strings[j].Module })
		v.Inverters = append(v.Inverters, *inv)
		v.PowerW += inv.PowerW
		v.EnergyTodayWh += inv.EnergyTodayWh
		v.EnergyMonthWh += inv.EnergyMonthWh
	}
	sort.Slice(v.Inverters, func(i, j int) bool {
		a, b := v.Inverters[i], v.Inverters[j]
		return a.Site+"/"+a.Gateway+"/"+a.Device < b.Site+"/"+b.Gateway+"/"+b.Device
	})
	for _, ser := range res[5].Series {
		for row := range ser.Values {
			v.Plot.T = append(v.Plot.T, ser.Time(row).Unix())
			if f, ok := ser.Float(row, "kw"); ok {
				v.Plot.V = append(v.Plot.V, &f)
			} else {
				v.Plot.V = append(v.Plot.V, nil)
			}
		}
	}
	return v, nil
}
