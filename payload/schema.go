package payload

import "fmt"

// Measurement describes a measurement fixed by the InfluxDB contract: the
// tags every record of it must carry and the type of each known field.
// Fields not listed are allowed (the contract grows by adding fields); a
// listed field with another type is an error, because InfluxDB rejects a
// field whose type changes and dashboards would silently lose it.
type Measurement struct {
	Name         string
	RequiredTags []string
	OptionalTags []string
	Fields       map[string]ValueType
}

// Schema is the InfluxDB contract (docs/influxdb-schema.md), keyed by
// measurement name.
var Schema = map[string]*Measurement{
	"parking_bay": {
		Name: "parking_bay", RequiredTags: []string{"device", "bay"}, OptionalTags: []string{"lot", "zone"},
		Fields: map[string]ValueType{"occupied": TypeBool, "distance_cm": TypeFloat},
	},
	"parking_lot": {
		Name: "parking_lot", RequiredTags: []string{"lot"}, OptionalTags: []string{"zone"},
		Fields: map[string]ValueType{"capacity": TypeInt, "occupied": TypeInt, "unknown": TypeInt, "free": TypeInt,
			"source": TypeString, "in_total": TypeBool},
	},
	"barrier": {
		Name: "barrier", RequiredTags: []string{"device"}, OptionalTags: []string{"lane", "direction"},
		Fields: map[string]ValueType{"event": TypeString, "count": TypeInt},
	},
	"lane": {
		Name: "lane", RequiredTags: []string{"event"}, OptionalTags: []string{"lane", "lot", "direction"},
		Fields: map[string]ValueType{
			"state": TypeString, "credential": TypeString, "reason": TypeString, "reader": TypeString,
			"latency_ms": TypeFloat, "duration_ms": TypeFloat,
			"occupied": TypeInt, "free": TypeInt, "capacity": TypeInt, "previous": TypeInt,
		},
	},
	"access": {
		Name: "access", RequiredTags: []string{"door", "result"}, OptionalTags: []string{"reader"},
		Fields: map[string]ValueType{"credential": TypeString, "reason": TypeString, "latency_ms": TypeFloat},
	},
	"door": {
		Name: "door", RequiredTags: []string{"door"},
		Fields: map[string]ValueType{"state": TypeString, "open": TypeBool},
	},
	"pv": {
		Name: "pv", RequiredTags: []string{"device"}, OptionalTags: []string{"model"},
		Fields: map[string]ValueType{
			"ac_power_w": TypeFloat, "ac_energy_wh": TypeFloat, "dc_voltage_v": TypeFloat,
			"dc_current_a": TypeFloat, "dc_power_w": TypeFloat, "temp_c": TypeFloat, "state": TypeString,
			// Additions (drivers/sunspec), when the inverter has the point.
			"ac_frequency_hz": TypeFloat, "rated_power_w": TypeFloat, "max_power_w": TypeFloat,
			"power_limit_pct": TypeFloat, "power_limit_enabled": TypeBool,
		},
	},
	"pv_mppt": {
		Name: "pv_mppt", RequiredTags: []string{"device", "module"},
		Fields: map[string]ValueType{"dc_voltage_v": TypeFloat, "dc_current_a": TypeFloat, "dc_power_w": TypeFloat},
	},
	"gateway_health": {
		Name: "gateway_health",
		Fields: map[string]ValueType{
			"uplink_connected": TypeBool, "outbox_bytes": TypeInt, "outbox_dropped": TypeInt,
			"bus_errors": TypeInt, "rss_bytes": TypeInt, "bus_utilization": TypeFloat,
		},
	},
	"alert": {
		Name: "alert", RequiredTags: []string{"rule", "severity"}, OptionalTags: []string{"device"},
		Fields: map[string]ValueType{"message": TypeString},
	},
}

// GatewayMeasurements are the measurements outside Schema that the gateway,
// its drivers and the bundled example plugins write (docs/influxdb-schema.md,
// "Further measurements"). cloudd writes Schema's and these by default and
// drops records of any other measurement unless it is configured to allow
// it.
var GatewayMeasurements = []string{
	"fault",            // device, driver, plugin and rule faults
	"virtual",          // rule set actions
	"command",          // command executions
	"gpio",             // drivers/gpio inputs
	"reader",           // drivers/osdp readers
	"guidance_display", // plugins/examples/guidance-display
	"zone_guidance",    // plugins/examples/zone-guidance
}

// CheckSchema checks a record of a contract measurement against Schema.
// Records of other measurements pass.
func CheckSchema(r *Record) error {
	m, ok := Schema[r.Measurement]
	if !ok {
		return nil
	}
	for _, t := range m.RequiredTags {
		if r.Tags[t] == "" {
			return fmt.Errorf("%s: missing required tag %q", r.Measurement, t)
		}
	}
	for name, v := range r.Fields {
		want, ok := m.Fields[name]
		if ok && v.Type() != want {
			return fmt.Errorf("%s: field %q is %s, the contract says %s", r.Measurement, name, v.Type(), want)
		}
	}
	return nil
}
