package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/gateway/status"
	"github.com/luling-edge/luling/internal/testenv"
)

// The status numbers that were always zero: a polled bus has a utilization
// above 0 (also in gateway_health), and the uplink's last connect is when
// it connected, not year 1.
func TestStatusBusUtilizationAndLastConnect(t *testing.T) {
	lot, err := modbussim.NewLot(modbussim.LotConfig{Bays: 4, Buses: 1, Ultrasonic: 1, Seed: 3, Dir: t.TempDir(),
		Line: modbussim.Line{Baud: 19200}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lot.Close() })
	broker := testenv.Mosquitto(t)
	before := time.Now()
	gw, stop := startGateway(t, lotConfig(t, lot, broker.URL(), "", "", 50*time.Millisecond))
	defer stop()
	var s *status.Snapshot
	testenv.WaitFor(t, 20*time.Second, "a connected uplink and a busy bus", func() bool {
		s = gw.Snapshot()
		return s.Uplink.Connected && s.Buses[0].Transactions > 10 && s.Buses[0].Utilization > 0
	})
	if u := s.Buses[0].Utilization; u > 1 {
		t.Errorf("utilization %v, want a fraction", u)
	}
	if lc := s.Uplink.LastConnect; lc.Before(before.Add(-time.Second)) || lc.After(time.Now()) {
		t.Errorf("uplink last_connect %v, want between %v and now", lc, before)
	}
	var m strings.Builder
	status.WriteMetrics(&m, s)
	if strings.Contains(m.String(), "luling_gateway_bus_utilization{bus=\"rs485-1\",port=\""+lot.Buses()[0].Path+"\"} 0\n") {
		t.Errorf("metrics show utilization 0:\n%s", m.String())
	}
	h := gw.healthRecord()
	if v, ok := h.Fields["bus_utilization"]; !ok || v.Float() <= 0 {
		t.Errorf("gateway_health bus_utilization = %v (present %v), want above 0", v, ok)
	}
}
