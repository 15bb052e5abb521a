package natsbus

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/payload"
)

// stateKey is the sequence bucket's key of partition p.
func stateKey(p int) string { return "part-" + strconv.Itoa(p) }

// marshalPartitionState encodes the sequence states of a partition's
// gateways: a JSON object from "site/gateway" to fleet.SeqState.
func marshalPartitionState(states map[string]fleet.SeqState) []byte {
	raw := make(map[string]json.RawMessage, len(states))
	for k, st := range states {
		raw[k] = st.Marshal()
	}
	b, _ := json.Marshal(raw) // raw JSON and strings: cannot fail
	return b
}

// parsePartitionState decodes a partition's record. A gateway whose key or
// state is bad is left out and reported; the others are returned.
func parsePartitionState(b []byte) (map[string]fleet.SeqState, []error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return map[string]fleet.SeqState{}, []error{fmt.Errorf("sequence states: want a JSON object of site/gateway to state: %w", err)}
	}
	out := make(map[string]fleet.SeqState, len(raw))
	var bad []error
	for k, v := range raw {
		site, gw, ok := strings.Cut(k, "/")
		if !ok || !payload.ValidID(site) || !payload.ValidID(gw) {
			bad = append(bad, fmt.Errorf("sequence states: key %q: want site/gateway, each [a-z0-9-]{1,64}", k))
			continue
		}
		st, err := fleet.ParseSeqState(v)
		if err != nil {
			bad = append(bad, fmt.Errorf("%s: %w", k, err))
			continue
		}
		out[k] = st
	}
	return out, bad
}
