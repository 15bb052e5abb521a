package citysim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/luling-edge/luling/payload"
)

// bayZone is how many bays share a zone tag.
const bayZone = 50

func bayTags(i int) map[string]string {
	return map[string]string{
		"device": fmt.Sprintf("bay-%04d", i+1), "lot": "a",
		"zone": fmt.Sprintf("z%d", i/bayZone+1), "bay": fmt.Sprintf("%04d", i+1),
	}
}

// devices is the birth message's device list: the bays and the inverter.
func devices(n int) []payload.DeviceInfo {
	out := make([]payload.DeviceInfo, 0, n+1)
	for i := 0; i < n; i++ {
		t := bayTags(i)
		id := t["device"]
		delete(t, "device")
		out = append(out, payload.DeviceInfo{ID: id, Driver: "modbus", Measurement: "parking_bay", Tags: t})
	}
	return append(out, payload.DeviceInfo{ID: "inv-1", Driver: "sunspec", Measurement: "pv", Tags: map[string]string{"model": "citysim"}})
}

// traffic draws what gateways observe. It belongs to the scheduler
// goroutine.
type traffic struct {
	rng       *rand.Rand
	bayLambda float64             // bay changes per gateway per period
	evLambda  float64             // access and inverter records per gateway per period
	bays      []map[string]string // tags of bay i, the same on every gateway
}

func newTraffic(cfg *Config) *traffic {
	perPeriod := float64(cfg.Devices) * cfg.BatchEvery.Seconds() / cfg.BayChange.Seconds()
	ev := 0.0
	if cfg.EventShare > 0 {
		ev = perPeriod * cfg.EventShare / (1 - cfg.EventShare)
	}
	tr := &traffic{rng: rand.New(rand.NewPCG(cfg.Seed, 0x6c756c696e67)), bayLambda: perPeriod, evLambda: ev}
	for i := 0; i < cfg.Devices; i++ {
		tr.bays = append(tr.bays, bayTags(i))
	}
	return tr
}

// poisson draws from a Poisson distribution of mean l (Knuth's method for
// small means, a rounded normal approximation above 30).
func (tr *traffic) poisson(l float64) int {
	if l <= 0 {
		return 0
	}
	if l > 30 {
		n := math.Round(l + math.Sqrt(l)*tr.rng.NormFloat64())
		return int(max(n, 0))
	}
	limit, p, k := math.Exp(-l), 1.0, 0
	for {
		p *= tr.rng.Float64()
		if p <= limit {
			return k
		}
		k++
	}
}

// observe returns what gateway g saw during the period (from, to]: bay
// changes and inverter readings (telemetry) and access decisions (events),
// each record at its own instant, ascending, so no two records of a gateway
// share a time.
func (tr *traffic) observe(g *gateway, from, to time.Time) (tele, events []payload.Record) {
	nb, ne := tr.poisson(tr.bayLambda), tr.poisson(tr.evLambda)
	n := nb + ne
	if n == 0 {
		return nil, nil
	}
	step := to.Sub(from) / time.Duration(n+1)
	if step <= 0 {
		step = time.Nanosecond
	}
	// Shuffle which slots hold events so they interleave with bay changes.
	for k := 0; k < n; k++ {
		t := from.Add(step * time.Duration(k+1))
		if tr.rng.IntN(n-k) < ne {
			ne--
			r := tr.event(g, t)
			if r.Measurement == "access" {
				events = append(events, r)
			} else {
				tele = append(tele, r)
			}
			continue
		}
		bay := tr.rng.IntN(len(g.occupied))
		occ := !g.occupied[bay]
		g.occupied[bay] = occ
		dist := 240 + 20*tr.rng.Float64()
		if occ {
			dist = 110 + 30*tr.rng.Float64()
		}
		tele = append(tele, payload.Record{
			Measurement: "parking_bay", Tags: tr.bays[bay], Time: t,
			Fields: map[string]payload.Value{"occupied": payload.Bool(occ), "distance_cm": payload.Float(math.Round(dist*10) / 10)},
		})
	}
	return tele, events
}

// doors per gateway that access events are spread over.
var doorTags = []map[string]string{
	{"door": "gate-1", "reader": "rdr-1", "result": "granted"},
	{"door": "gate-1", "reader": "rdr-1", "result": "denied"},
	{"door": "lobby", "reader": "rdr-2", "result": "granted"},
	{"door": "lobby", "reader": "rdr-2", "result": "denied"},
}

var pvTags = map[string]string{"device": "inv-1", "model": "citysim"}

// event is an access decision (half of them) or an inverter reading.
func (tr *traffic) event(g *gateway, t time.Time) payload.Record {
	if tr.rng.IntN(2) == 0 {
		g.events++
		d := 2 * tr.rng.IntN(2)
		reason := "ok"
		if tr.rng.IntN(10) == 0 {
			d++
			reason = "unknown_credential"
		}
		return payload.Record{Measurement: "access", Tags: doorTags[d], Time: t, Fields: map[string]payload.Value{
			"credential": payload.String(fmt.Sprintf("card-%d", g.events%500)), "reason": payload.String(reason),
			"latency_ms": payload.Float(math.Round((20+60*tr.rng.Float64())*10) / 10),
		}}
	}
	v := 380 + 40*tr.rng.Float64()
	a := 2 + 8*tr.rng.Float64()
	return payload.Record{Measurement: "pv", Tags: pvTags, Time: t, Fields: map[string]payload.Value{
		"dc_voltage_v": payload.Float(math.Round(v*10) / 10), "dc_current_a": payload.Float(math.Round(a*100) / 100),
		"dc_power_w": payload.Float(math.Round(v * a)), "ac_power_w": payload.Float(math.Round(v * a * 0.96)),
		"temp_c": payload.Float(math.Round((30+15*tr.rng.Float64())*10) / 10), "state": payload.String("mppt"),
	}}
}
