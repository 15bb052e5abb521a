package web

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A lot counted at its lanes shows its whole-lot count as the lot's free
// bays, not that plus its sensor zones; its zones still show.
func TestAreaCountedLot(t *testing.T) {
	p := newPlatform(t)
	ms := time.Now().UnixMilli()
	p.write(
		fmt.Sprintf("parking_lot,site=east,gateway=gw-5,lot=c1 capacity=50i,occupied=30i,free=20i,source=\"combined\" %d", ms-1000),
		fmt.Sprintf("parking_lot,site=east,gateway=gw-5,lot=c1,zone=ev capacity=4i,occupied=3i,free=1i,source=\"sensors\" %d", ms-1000),
		fmt.Sprintf("parking_lot,site=east,gateway=gw-5,lot=c2 capacity=8i,occupied=3i,free=5i,source=\"sensors\" %d", ms-1000),
	)
	p.online("east", "gw-5")
	code, body, _ := p.get(p.client("view"), "/")
	if code != 200 {
		t.Fatalf("area: HTTP %d\n%s", code, body)
	}
	if got := textOf(t, body, "free-east-c1"); got != "20" {
		t.Errorf("counted lot c1 shows %s free, want 20 (the count, not 20+1)", got)
	}
	if got := textOf(t, body, "free-east-c2"); got != "5" {
		t.Errorf("sensor lot c2 without a zone shows %s free, want 5", got)
	}
	if got := textOf(t, body, "free-total"); got != "25" {
		t.Errorf("area shows %s free, want 25", got)
	}
	code, body, _ = p.get(p.client("view"), "/lots/east/c1")
	if code != 200 {
		t.Fatalf("lot: HTTP %d\n%s", code, body)
	}
	if got := textOf(t, body, "lot-free"); got != "20" {
		t.Errorf("lot view of c1 shows %s free, want 20", got)
	}
	plot, err := p.srv.lotPlot(context.Background(), "east", "c1", "24h")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(plot.V); n == 0 || plot.V[n-1] == nil || *plot.V[n-1] != 30 {
		t.Errorf("plot of c1 ends at %v, want the count's 30 occupied (not 30+3)", plot.V)
	}
}
