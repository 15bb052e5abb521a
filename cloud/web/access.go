package web

import (
	"context"
	"sort"
	"strings"
	"time"
)

// AccessView is the access-control view: doors, readers and the event log.
type AccessView struct {
	Doors   []DoorView
	Readers []ReaderView
	Events  []AccessEvent
	Query   string // the search
	Result  string // "", "granted", "denied" or "alarm"
}

// DoorView is one door's last state.
type DoorView struct {
	Site, Gateway, Door, State string
	Since                      time.Time
}

// ReaderView is one card reader (an osdp or wiegand device of a gateway).
type ReaderView struct {
	Site, Gateway, Device, Driver string
	Online                        bool
	Message                       string
}

// AccessEvent is one line of the event log: an access decision or a door
// alarm (forced, held open).
type AccessEvent struct {
	Time                                time.Time
	Site, Gateway, Door, Reader, Result string
	Credential, Reason                  string
	LatencyMS                           float64
}

// maxEvents is how many events the log reads from InfluxDB (the last 24 h,
// newest first) before the search filters them.
const maxEvents = 1000

var accessQueries = []string{
	`SELECT last("state") AS "state" FROM "door" WHERE time > now() - 30d GROUP BY "site", "gateway", "door"`,
	`SELECT last("state") AS "state", last("message") AS "message" FROM "fault" WHERE time > now() - 30d AND ("driver" = 'osdp' OR "driver" = 'wiegand') GROUP BY "site", "gateway", "device"`,
	`SELECT "credential", "reason", "latency_ms", "door", "reader", "result" FROM "access" WHERE time > now() - 24h ORDER BY time DESC LIMIT 1000`,
	`SELECT "state", "door" FROM "door" WHERE time > now() - 24h AND ("state" = 'forced' OR "state" = 'held') ORDER BY time DESC LIMIT 1000`,
}

func (s *Server) access(ctx context.Context, query, result string) (*AccessView, error) {
	res, err := s.influx.Query(ctx, accessQueries...)
	if err != nil {
		return nil, err
	}
	v := &AccessView{Query: query, Result: result}
	for _, ser := range res[0].Series {
		v.Doors = append(v.Doors, DoorView{Site: ser.Tags["site"], Gateway: ser.Tags["gateway"], Door: ser.Tags["door"], State: ser.String(0, "state"), Since: ser.Time(0)})
	}
	faults := map[string][2]string{}
	for _, ser := range res[1].Series {
		faults[ser.Tags["site"]+"/"+ser.Tags["gateway"]+"/"+ser.Tags["device"]] = [2]string{ser.String(0, "state"), ser.String(0, "message")}
	}
	for _, g := range s.fleet.Gateways() {
		for _, d := range g.Devices {
			if d.Driver != "osdp" && d.Driver != "wiegand" {
				continue
			}
			f := faults[g.Site+"/"+g.Gateway+"/"+d.ID]
			v.Readers = append(v.Readers, ReaderView{Site: g.Site, Gateway: g.Gateway, Device: d.ID, Driver: d.Driver, Online: g.Online && f[0] != "offline", Message: f[1]})
		}
	}
	var events []AccessEvent
	for _, ser := range res[2].Series { // no GROUP BY: tags are columns
		for row := range ser.Values {
			lat, _ := ser.Float(row, "latency_ms")
			events = append(events, AccessEvent{Time: ser.Time(row), Site: ser.Tags["site"], Door: ser.String(row, "door"), Reader: ser.String(row, "reader"),
				Result: ser.String(row, "result"), Credential: ser.String(row, "credential"), Reason: ser.String(row, "reason"), LatencyMS: lat})
		}
	}
	for _, ser := range res[3].Series {
		for row := range ser.Values {
			events = append(events, AccessEvent{Time: ser.Time(row), Door: ser.String(row, "door"), Result: "alarm", Reason: ser.String(row, "state")})
		}
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Time.After(events[j].Time) })
	q := strings.ToLower(strings.TrimSpace(query))
	for _, e := range events {
		if result != "" && e.Result != result {
			continue
		}
		if q != "" && !strings.Contains(strings.ToLower(e.Door+" "+e.Reader+" "+e.Credential+" "+e.Reason), q) {
			continue
		}
		v.Events = append(v.Events, e)
		if len(v.Events) == 200 {
			break
		}
	}
	sort.Slice(v.Doors, func(i, j int) bool { return v.Doors[i].Site+v.Doors[i].Door < v.Doors[j].Site+v.Doors[j].Door })
	sort.Slice(v.Readers, func(i, j int) bool {
		return v.Readers[i].Site+v.Readers[i].Device < v.Readers[j].Site+v.Readers[j].Device
	})
	return v, nil
}
