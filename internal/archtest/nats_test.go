package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

// The NATS engine is cloudd's: gatewayd speaks MQTT to NATS's listener and
// links no NATS code, and no binary links the NATS server (only tests and
// benchmarks run it).
func TestNATSStaysInCloudd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, c := range []struct {
		pkg, forbidden string
	}{
		{"./cmd/gatewayd", "github.com/nats-io/"},
		{"./cmd/gatewayctl", "github.com/nats-io/"},
		{"./cmd/cloudd", "github.com/nats-io/nats-server/"},
	} {
		cmd := exec.Command("go", "list", "-deps", c.pkg)
		cmd.Dir = "../.."
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", c.pkg, err)
		}
		for _, p := range strings.Fields(string(out)) {
			if strings.HasPrefix(p, c.forbidden) {
				t.Errorf("%s depends on %s: it must not link %s*", c.pkg, p, c.forbidden)
			}
		}
	}
}
