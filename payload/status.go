package payload

import (
	"encoding/json"
	"fmt"
	"time"
)

// Status is the retained message on the status topic: the birth message a
// gateway publishes when it connects (Online true) and its Last Will, which
// the broker publishes when the gateway vanishes (Online false).
type Status struct {
	V       int          `json:"v"`
	Site    string       `json:"site"`
	Gateway string       `json:"gateway"`
	Online  bool         `json:"online"`
	Version string       `json:"version,omitempty"`
	Started *time.Time   `json:"started,omitempty"`
	Time    time.Time    `json:"t"`
	Devices []DeviceInfo `json:"devices,omitempty"`
}

// DeviceInfo describes one configured device in the birth message, so the
// cloud knows a gateway's devices (for example a parking lot's capacity)
// before each of them has reported.
type DeviceInfo struct {
	ID          string            `json:"id"`
	Driver      string            `json:"driver"`
	Measurement string            `json:"m,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// EncodeStatus returns the JSON encoding of s.
func EncodeStatus(s *Status) []byte {
	s.V = Version
	b, err := json.Marshal(s)
	if err != nil { // only plain types: cannot happen
		panic(err)
	}
	return b
}

// DecodeStatus parses and checks a status body.
func DecodeStatus(body []byte) (*Status, error) {
	if len(body) > MaxBodyBytes {
		return nil, schemaErr("status body is %d bytes, more than the %d allowed", len(body), MaxBodyBytes)
	}
	var s Status
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, schemaErr("status: invalid JSON: %v", err)
	}
	if s.V != Version {
		return nil, schemaErr(`status: unsupported schema version "v": %d`, s.V)
	}
	if !ValidID(s.Site) || !ValidID(s.Gateway) {
		return nil, schemaErr("status: bad identity %q/%q: want [a-z0-9-]{1,64}", s.Site, s.Gateway)
	}
	for i, d := range s.Devices {
		if d.ID == "" {
			return nil, schemaErr("status: devices[%d]: empty id", i)
		}
	}
	return &s, nil
}

// String names the gateway.
func (s *Status) String() string { return fmt.Sprintf("%s/%s online=%v", s.Site, s.Gateway, s.Online) }
