package gateway

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	periphgpio "periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/drivers/osdp"
	"github.com/luling-edge/luling/gateway/access"
	"github.com/luling-edge/luling/gateway/status"
	"github.com/luling-edge/luling/internal/testenv"
)

// strikeRig records, for the card to strike benchmark, when the simulated
// readers wrote a reply carrying a card and when the strikes rose and fell.
type strikeRig struct {
	mu    sync.Mutex
	cards map[byte]time.Time // reader address → write of its last card reply
	high  map[string]time.Time
	level map[string]periphgpio.Level
	rose  chan string
}

func (r *strikeRig) onReply(addr byte, reply []byte, at time.Time) {
	f, err := osdp.Decode(reply)
	if err != nil || f.Code != osdp.ReplyRaw {
		return
	}
	r.mu.Lock()
	r.cards[addr] = at
	r.mu.Unlock()
}

func (r *strikeRig) onOut(line string, l periphgpio.Level, _ time.Time) {
	now := time.Now() // when the simulator sees the level change
	r.mu.Lock()
	r.level[line] = l
	if l == periphgpio.High {
		r.high[line] = now
	}
	r.mu.Unlock()
	if l == periphgpio.High {
		r.rose <- line
	}
}

func (r *strikeRig) low(line string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.level[line] != periphgpio.High
}

// busTimeouts reads the missed replies of the gateway's buses from its
// status page.
func busTimeouts(tb testing.TB, port int) (n uint64) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", port))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var snap status.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
		tb.Fatal(err)
	}
	for _, bs := range snap.Buses {
		n += bs.Timeouts
	}
	return n
}

// procCPU is the user and system CPU time process pid has used.
func procCPU(tb testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// BenchmarkCardToStrikeOSDP measures card to strike through the real stack: a
// gateway process (TestGatewayChild) with eight OSDP readers on one
// 115200 baud line (the simulator on a pty, paced like the wire) polled at
// `poll: 200ms` plus the line's idle time, eight doors, and their strikes
// on the GPIO simulator. For each card, presented at the readers in turn
// after a random pause:
//
//   - wire-*: from the simulator's write of the POLL reply that carries the
//     card (its last byte has left the wire) to the simulator seeing the
//     strike line rise. It includes reading and decoding the reply, the
//     decision, and the fsync of the access record (the outbox is on this
//     machine's disk). Target: p99 ≤ 30 ms.
//   - card-*: from the card presented at the reader, so the wait for the
//     reader's next poll is in it too.
//
// Before the cards, it measures the gateway process's CPU while the line's
// eight idle readers are polled (idle-cpu-%, of one core), the polls per
// second that cost, and the CPU per poll. 240 cards (about 20 s) whatever b.N.
func BenchmarkCardToStrikeOSDP(b *testing.B) {
	const readers = 8
	rig := &strikeRig{cards: map[byte]time.Time{}, high: map[string]time.Time{}, level: map[string]periphgpio.Level{}, rose: make(chan string, 64)}
	lines := make([]string, readers)
	for i := range lines {
		lines[i] = fmt.Sprintf("gpiochip0:%d", 17+i)
	}
	_, sock := gpioSimWith(b, simgpio.ServerOptions{OnOut: rig.onOut}, lines...)
	sims, port := readerLine(b, 115200, readers, rig.onReply)
	dir := b.TempDir()
	store, err := access.OpenStore(filepath.Join(dir, "access"), access.StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := store.Sync(1, []access.Credential{{ID: "alice", Card: "12:3456"}}); err != nil {
		b.Fatal(err)
	}
	statusPort := testenv.FreePort(b)
	yaml := fmt.Sprintf(`site: s
gateway: g
log: {level: warn}
uplink: {brokers: ["tcp://127.0.0.1:%d"]}
outbox: {path: %s}
status: {listen: "127.0.0.1:%d"}
gpio: {simulator: %s}
%sdoors:
`, testenv.FreePort(b), filepath.Join(dir, "outbox"), statusPort, sock, readersYAML(port, 115200, readers, "200ms"))
	for i := range readers {
		yaml += fmt.Sprintf("  - {name: door-%d, readers: [reader-%d], strike: %q, unlock_time: 500ms}\n", i+1, i+1, lines[i])
	}
	gw := gatewayChild(b, writeFile(b, dir, "gateway.yaml", yaml))
	polls := func() (n int) {
		for _, s := range sims {
			n += s.Counts().ByCode[osdp.CmdPoll]
		}
		return n
	}
	testenv.WaitFor(b, 30*time.Second, "every reader polled", func() bool {
		for _, s := range sims {
			if s.Counts().ByCode[osdp.CmdPoll] < 10 {
				return false
			}
		}
		return true
	})

	const idle = 3 * time.Second
	cpu0, polls0, t0 := procCPU(b, gw.cmd.Process.Pid), polls(), time.Now()
	time.Sleep(idle) // the measurement window: nothing happens on the line but polls
	cpu1, polls1, el := procCPU(b, gw.cmd.Process.Pid), polls(), time.Since(t0)

	const cards = 240
	wire := make([]time.Duration, 0, cards)
	card := make([]time.Duration, 0, cards)
	b.ResetTimer()
	for i := range cards {
		k := i % readers
		for !rig.low(lines[k]) {
			time.Sleep(5 * time.Millisecond) // the door relocks after unlock_time; this judges nothing
		}
		time.Sleep(time.Duration(rand.IntN(25_000)) * time.Microsecond) // a random phase against the polls
		presented := time.Now()
		sims[k].PresentWiegand26(12, 3456)
		select {
		case line := <-rig.rose:
			if line != lines[k] {
				b.Fatalf("card at reader-%d opened %s, want %s", k+1, line, lines[k])
			}
		case <-gw.exited:
			b.Fatal("the gateway exited")
		case <-time.After(10 * time.Second):
			b.Fatalf("card %d at reader-%d: the strike did not open", i, k+1)
		}
		rig.mu.Lock()
		opened, replied := rig.high[lines[k]], rig.cards[byte(k+1)]
		rig.mu.Unlock()
		if replied.Before(presented) {
			b.Fatalf("card %d: no reply carrying it was seen", i)
		}
		wire = append(wire, opened.Sub(replied))
		card = append(card, opened.Sub(presented))
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	for _, m := range []struct {
		name string
		v    []time.Duration
	}{{"wire", wire}, {"card", card}} {
		slices.Sort(m.v)
		b.ReportMetric(ms(m.v[len(m.v)/2]), m.name+"-p50-ms")
		b.ReportMetric(ms(m.v[len(m.v)*99/100]), m.name+"-p99-ms")
		b.ReportMetric(ms(m.v[len(m.v)-1]), m.name+"-max-ms")
	}
	// Missed replies explain a long tail: the bus backs a reader off for a
	// second after one (a simulator starved of CPU can miss the 200 ms).
	b.ReportMetric(float64(busTimeouts(b, statusPort)), "bus-timeouts")
	b.ReportMetric(100*float64(cpu1-cpu0)/float64(el), "idle-cpu-%")
	b.ReportMetric(float64(polls1-polls0)/el.Seconds(), "idle-polls/s")
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(max(polls1-polls0, 1)), "idle-cpu-µs/poll")
}
