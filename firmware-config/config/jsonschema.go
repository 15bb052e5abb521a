package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/luling-edge/luling/internal/schema"
)

// JSONSchemaID is the $id of the schema JSONSchema makes.
const JSONSchemaID = "https://luling-edge.github.io/schemas/gateway.schema.json"

// JSONSchema describes a gateway config as a JSON Schema (draft 2020-12)
// for editors (yaml-language-server) and other tools: the sections and
// their keys from the lists Load checks against (an unknown key is
// refused, as Load refuses it), each key's type and fixed values, and
// for each driver the device options its schema accepts. opts are the
// options the config is loaded with (the drivers' rules). It is looser
// than Load where a check needs more than one value (a bus that a device
// names, units used twice) or a file: validate is the full check. It
// fails when a key Load knows has no type here.
func JSONSchema(opts ...Option) (map[string]any, error) {
	o := &options{rules: map[string]DriverRule{}}
	for _, opt := range opts {
		opt(o)
	}
	var missing []string
	obj := func(section string, keys []string, types map[string]any) map[string]any {
		props := map[string]any{}
		for _, k := range keys {
			t, ok := types[k]
			if !ok {
				missing = append(missing, section+k)
				continue
			}
			props[k] = t
		}
		return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	}
	str := map[string]any{"type": "string"}
	name := map[string]any{"type": "string", "pattern": namePattern}
	dur := map[string]any{"type": "string", "description": "a duration such as 500ms, 2s or 1h"}
	boolean := map[string]any{"type": "boolean"}
	intIn := func(lo, hi int64) map[string]any {
		return map[string]any{"type": "integer", "minimum": lo, "maximum": hi}
	}
	strs := map[string]any{"type": "array", "items": str}
	pin := map[string]any{"anyOf": []any{str, obj("doors[].pin.", pinKeys, map[string]any{"pin": str, "active_low": boolean})}}

	baudList := make([]any, len(bauds))
	for i, b := range bauds {
		n, _ := strconv.Atoi(b)
		baudList[i] = n
	}
	deviceTypes := map[string]any{
		"id": str, "driver": str, "bus": str, "profile": str, "poll": dur, "max_silence": dur,
		"repeat": obj("devices[].repeat.", repeatKeys, map[string]any{"from": intIn(0, 1_000_000), "to": intIn(0, 1_000_000)}),
		// A unit is a number, or a template such as "{n}" in a repeat.
		"unit":     map[string]any{"anyOf": []any{intIn(0, 1<<31), templateString()}},
		"deadband": map[string]any{"anyOf": []any{map[string]any{"type": "number", "minimum": 0}, map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "number", "minimum": 0}}}},
		"tags":     map[string]any{"type": "object", "additionalProperties": map[string]any{"type": []any{"string", "number", "boolean"}}},
		"options":  map[string]any{"type": "object"},
	}
	device := obj("devices[].", deviceKeys, deviceTypes)
	device["required"] = []any{"id", "driver"}
	drivers := make([]string, 0, len(o.rules))
	for d := range o.rules {
		drivers = append(drivers, d)
	}
	slices.Sort(drivers)
	if len(drivers) > 0 {
		enum := make([]any, len(drivers))
		var perDriver []any
		for i, d := range drivers {
			enum[i] = d
			if opts := o.rules[d].Options; opts != nil {
				perDriver = append(perDriver, map[string]any{
					"if":   map[string]any{"properties": map[string]any{"driver": map[string]any{"const": d}}, "required": []any{"driver"}},
					"then": map[string]any{"properties": map[string]any{"options": optionsSchema(opts)}},
				})
			}
		}
		device["properties"].(map[string]any)["driver"] = map[string]any{"enum": enum}
		device["allOf"] = perDriver
	}

	root := obj("", topKeys, map[string]any{
		"site": name, "gateway": name, "profiles_dir": str,
		"log": obj("log.", logKeys, map[string]any{"level": enumOf("debug", "info", "warn", "error"), "format": enumOf("text", "json")}),
		"uplink": obj("uplink.", uplinkKeys, map[string]any{
			"brokers":   map[string]any{"type": "array", "minItems": 1, "items": map[string]any{"type": "string", "pattern": "^(" + strings.Join(brokerSchemes, "|") + ")://"}},
			"client_id": str, "username": str, "password": str, "password_file": str,
			"tls": obj("uplink.tls.", tlsKeys, map[string]any{"ca": str, "cert": str, "key": str, "server_name": str, "insecure_skip_verify": boolean}),
			"qos": map[string]any{"const": 1}, "keepalive": dur, "connect_timeout": dur, "max_inflight": intIn(1, 1000), "reconnect_max": dur,
		}),
		"outbox": obj("outbox.", outboxKeys, map[string]any{
			"path": str, "max_bytes": map[string]any{"type": []any{"string", "integer"}, "description": "bytes, or a size such as 64MB"},
			"commit_interval": dur, "telemetry_window": dur, "batch_max_records": intIn(1, 10000),
		}),
		"status":   obj("status.", statusKeys, map[string]any{"listen": str}),
		"pipeline": obj("pipeline.", pipelineKeys, map[string]any{"health_interval": dur, "max_silence": dur}),
		"gpio":     obj("gpio.", gpioKeys, map[string]any{"simulator": str}),
		"buses": map[string]any{"type": "array", "items": withRequired(obj("buses[].", busKeys, map[string]any{
			"name": name, "port": str, "baud": map[string]any{"enum": baudList}, "data_bits": intIn(5, 8),
			"parity": enumOf("none", "even", "odd"), "stop_bits": intIn(1, 2), "timeout": dur, "backoff_max": dur, "turnaround": dur,
		}), "name", "port")},
		"devices": map[string]any{"type": []any{"array", "null"}, "items": device},
		"doors": map[string]any{"type": "array", "items": withRequired(obj("doors[].", doorKeys, map[string]any{
			"name": str, "readers": strs, "strike": pin, "contact": pin, "exit": pin, "unlock_time": dur, "held_time": dur,
			"wiegand": obj("doors[].wiegand.", wiegandKeys, map[string]any{"d0": str, "d1": str}),
		}), "name")},
		"lots": map[string]any{"type": "array", "items": withRequired(obj("lots[].", lotKeys, map[string]any{
			"name": str, "capacity": intIn(1, 100000), "sign": withRequired(obj("lots[].sign.", pointKeys, map[string]any{"device": str, "point": str}), "device"),
		}), "name", "capacity")},
		"lanes": map[string]any{"type": "array", "items": withRequired(obj("lanes[].", laneKeys, map[string]any{
			"name": str, "lot": str, "direction": enumOf("in", "out"), "arming": pin, "safety": pin, "debounce": dur,
			"readers": strs, "visitors": enumOf("deny", "auto"), "open_time": dur,
			"wiegand": obj("lanes[].wiegand.", wiegandKeys, map[string]any{"d0": str, "d1": str}),
			"barrier": obj("lanes[].barrier.", barrierKeys, map[string]any{
				"open": pin, "close": pin, "opened": pin, "closed": pin, "pulse": dur, "motor_time": dur,
				"coil": withRequired(obj("lanes[].barrier.coil.", pointKeys, map[string]any{"device": str, "point": str}), "device", "point"),
			}),
		}), "name", "direction", "barrier", "arming", "safety")},
		// Rules are checked by package gateway/rules (docs/rules.md).
		"rules": map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("config: JSON Schema: no type for %v", missing)
	}
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["$id"] = JSONSchemaID
	root["title"] = "Luling gateway config (gateway.yaml)"
	root["required"] = []any{"site", "gateway"}
	return root, nil
}

// optionsSchema is a driver's options: as JSON Schema. Any value may
// also be a template ("{n}") in a repeated device.
func optionsSchema(s schema.Schema) map[string]any {
	props := map[string]any{}
	var required []any
	for _, f := range s {
		var t map[string]any
		switch f.Kind {
		case schema.Bool:
			t = map[string]any{"type": "boolean"}
		case schema.Int:
			t = map[string]any{"type": "integer"}
			if f.Min != 0 || f.Max != 0 {
				t["minimum"], t["maximum"] = f.Min, f.Max
			}
		case schema.Number:
			t = map[string]any{"type": "number"}
		case schema.Mapping:
			t = map[string]any{"type": "object"}
		default: // strings and durations
			t = map[string]any{"type": "string"}
			if len(f.OneOf) > 0 {
				t = enumOf(f.OneOf...)
			}
		}
		if f.Doc != "" {
			t["description"] = f.Doc
		}
		if f.Kind != schema.String || len(f.OneOf) > 0 {
			t = map[string]any{"anyOf": []any{t, templateString()}, "description": f.Doc}
		}
		props[f.Key] = t
		if f.Required {
			required = append(required, f.Key)
		}
	}
	out := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if required != nil {
		out["required"] = required
	}
	return out
}

// templateString is a string holding a repeat template such as "{n}".
func templateString() map[string]any {
	return map[string]any{"type": "string", "pattern": `\{[^}]*\}`}
}

func enumOf(vals ...string) map[string]any {
	e := make([]any, len(vals))
	for i, v := range vals {
		e[i] = v
	}
	return map[string]any{"type": "string", "enum": e}
}

func withRequired(m map[string]any, keys ...string) map[string]any {
	r := make([]any, len(keys))
	for i, k := range keys {
		r[i] = k
	}
	m["required"] = r
	return m
}
