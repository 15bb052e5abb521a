package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/testenv"
)

// duplicateKeys returns the keys that occur more than once at the top level
// of the JSON object line (encoding/json would silently keep the last).
func duplicateKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	seen := map[string]bool{}
	var dups []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string)
		if seen[key] {
			dups = append(dups, key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return dups, nil
}

// With format: json, every log line is one object with each key once: the
// site and gateway attributes (set by gatewayd's logger), the bus's and the
// device's are each attached by one part only. A device that does not
// answer, a bus and the uplink all log here.
func TestLogLinesHaveEachKeyOnce(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 1, Buses: 1, Ultrasonic: 1, Seed: 7, Dir: t.TempDir(),
		Line: modbussim.Line{Baud: 115200}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lot.Close() })
	broker := testenv.Mosquitto(t)
	ghost := fmt.Sprintf("  - id: ghost\n    driver: modbus\n    bus: rs485-1\n    unit: 99\n    profile: %s\n    poll: 200ms\n", lot.Bays()[0].Model.Profile())
	cfg := lotConfigWith(t, lot, broker.URL(), "    timeout: 50ms\n", "", 200*time.Millisecond, ghost)
	var out testenv.Buffer
	log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})).
		With("site", cfg.Site, "gateway", cfg.Gateway) // as gatewayd's logger
	gw, err := New(cfg, Options{Version: "test", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway run: %v", err)
		}
	}
	testenv.WaitFor(t, 20*time.Second, "the ghost device's failure and the uplink's connect in the log", func() bool {
		s := out.String()
		return strings.Contains(s, `"device stopped answering"`) && strings.Contains(s, `"uplink connected"`)
	})
	stop()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var failLine bool
	for _, line := range lines {
		dups, err := duplicateKeys([]byte(line))
		if err != nil {
			t.Fatalf("%v in %s", err, line)
		}
		if len(dups) > 0 {
			t.Errorf("keys %v repeated in %s", dups, line)
		}
		if strings.Contains(line, `"device stopped answering"`) {
			failLine = strings.Contains(line, `"device":"ghost"`) && strings.Contains(line, `"site":"test-site"`)
		}
	}
	if !failLine {
		t.Errorf("no poll error line naming device ghost and the site:\n%s", out.String())
	}
}
