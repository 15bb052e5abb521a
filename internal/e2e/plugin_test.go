package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/ptypair"
	"github.com/luling-edge/luling/internal/testenv"
	"github.com/luling-edge/luling/plugins/examples/guidance-display/display"
	"github.com/luling-edge/luling/plugins/examples/guidance-display/display/displaysim"
	"github.com/luling-edge/luling/plugins/host"
	"golang.org/x/sys/unix"
)

// A guidance display driven by the example device plugin shares one RS-485
// line with three built-in Modbus bay sensors. Its readings and fault
// events reach InfluxDB through the gatewayd binary, Mosquitto and cloudd;
// killing the plugin process makes the gateway restart it while the bay
// sensors on the same line keep their poll rate; and a plugin device whose
// declared checksum is wrong is refused with a clear error in /status, and
// a plugin that hangs has its calls cut at their deadline and is restarted,
// while everything else keeps running.
func TestPluginOnSharedBus(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	pluginPath, sum := buildPlugin(t, "./plugins/examples/guidance-display")
	hangPath, hangSum := buildPlugin(t, "./plugins/host/testdata/testplugin")

	// The line: three Modbus bay sensors (units 10..12) and a guidance
	// display (address 1). The line multiplexer tells the protocols apart
	// by a frame's first byte, so units 2 and 3 (whose frames begin with
	// the display protocol's STX and ETX) are not used here.
	units := []byte{10, 11, 12}
	mb, sensors, signs, pair, line := sharedLine(t, "shared", units)
	signs.Set(1, display.Status{Shown: 123, Brightness: 9, TempC: 18.5})

	const bayPoll = 250 * time.Millisecond
	var devs strings.Builder
	for _, u := range units {
		fmt.Fprintf(&devs, "  - {id: sb-%03d, driver: modbus, bus: shared, unit: %d, profile: %s, poll: %s, tags: {lot: l1, zone: shared, bay: \"%03d\"}}\n",
			u, u, modbussim.Ultrasonic.Profile(), bayPoll, 100+int(u))
	}
	fmt.Fprintf(&devs, "  - {id: sign-north, driver: plugin, bus: shared, unit: 1, poll: 500ms, tags: {lot: l1, zone: north},\n"+
		"     options: {path: %s, sha256: %q, call_timeout: 2s, config: {address: 1, max_count: 999}}}\n", pluginPath, sum)
	wrong := strings.Repeat("ab", 32)
	fmt.Fprintf(&devs, "  - {id: sign-bad, driver: plugin, bus: shared, unit: 2, poll: 500ms,\n"+
		"     options: {path: %s, sha256: %q, config: {address: 2}}}\n", pluginPath, wrong)
	// A plugin whose Poll never returns: its calls are cut at call_timeout.
	fmt.Fprintf(&devs, "  - {id: stuck, driver: plugin, poll: 1s,\n"+
		"     options: {path: %s, sha256: %q, call_timeout: 300ms, config: {mode: hang}}}\n", hangPath, hangSum)
	w := newWorld(t, worldOptions{bays: 1, buses: 1, poll: bayPoll,
		moreBuses:   fmt.Sprintf("  - {name: shared, port: %s, baud: 19200, parity: even, stop_bits: 1, timeout: 200ms}\n", pair.Path()),
		moreDevices: devs.String()})
	if dump := os.Getenv("LULING_E2E_DUMP"); dump != "" { // the whole gatewayd log, for diagnosis
		defer func() { os.WriteFile(dump, []byte(w.gw.output()), 0o644) }()
	}

	// The display's readings reach InfluxDB with the device's tags.
	row := w.waitDisplay("sign-north", func(r map[string]any) bool { return num(r["shown"]) == 123 })
	if num(row["brightness"]) != 9 || num(row["temp_c"]) != 18.5 || row["blank"] != false {
		t.Errorf("guidance_display row %v, want shown 123, brightness 9, temp_c 18.5, not blank", row)
	}
	for k, v := range map[string]string{"site": "e2e", "gateway": "gw-1", "lot": "l1", "zone": "north"} {
		if row[k] != v {
			t.Errorf("guidance_display tag %s = %v, want %q (row %v)", k, row[k], v, row)
		}
	}
	// So do the bay sensors' readings from the same line.
	sensors[11].SetOccupied(!sensors[11].Occupied())
	w.waitBay("sb-011", sensors[11].Occupied())

	// A fault the display raises is an event in InfluxDB.
	signs.Set(1, display.Status{Shown: 123, Brightness: 9, TempC: 18.5, Faults: display.FaultCodes[0].Bit})
	w.waitFault("sign-north", display.FaultCodes[0].Code, "active")

	// The plugin device with the wrong checksum is refused, and says why.
	bad := w.waitDevice("sign-bad", func(d map[string]any) bool {
		e, _ := d["last_error"].(string)
		return strings.Contains(e, host.ErrChecksum.Error())
	})
	if e := bad["last_error"].(string); !strings.Contains(e, sum) || !strings.Contains(e, wrong) || !strings.Contains(e, pluginPath) {
		t.Errorf("sign-bad last_error %q: want the file, its sha256 %s and the declared %s", e, sum, wrong)
	}
	if n := len(pluginPIDs(t, w.gw.pid(), pluginPath)); n != 1 {
		t.Errorf("%d plugin processes run, want 1: the one with the wrong checksum must not start", n)
	}

	// The hung plugin's calls are cut at their deadline, and after three
	// cut calls in a row its process is killed and started again.
	w.waitDevice("stuck", func(d map[string]any) bool {
		e, _ := d["last_error"].(string)
		return strings.Contains(e, "no answer within 300ms") && strings.Contains(e, host.ErrCallTimeout.Error())
	})
	stuck := pluginPIDs(t, w.gw.pid(), hangPath)
	deadline := time.Now().Add(30 * time.Second)
	for {
		now := pluginPIDs(t, w.gw.pid(), hangPath)
		if len(stuck) == 1 && len(now) == 1 && now[0] != stuck[0] {
			break
		}
		if len(stuck) == 0 {
			stuck = now
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hung plugin (pids %v, now %v) was not killed and restarted within 30 s", stuck, now)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Kill the plugin process: the gateway restarts it, and the bay
	// sensors on the same line keep their rate meanwhile. The windows are
	// counted in requests to the world's own bay, the control, on a line
	// of its own that nothing the plugin does touches, not in wall-clock
	// time: a loaded machine slows both lines alike, so the comparison
	// holds without judging any wall-clock rate.
	const windowPolls = 24 // about 6 s at the 250 ms poll
	ctrlUnit := w.lot.Server(w.lot.Bays()[0].Bus).Unit(w.lot.Bays()[0].Unit)
	waitWindow := func(what string) {
		t.Helper()
		end := ctrlUnit.Stats().Requests + windowPolls
		testenv.WaitFor(t, 2*time.Minute, what, func() bool { return ctrlUnit.Stats().Requests >= end })
	}
	before := sharedLineRequests(mb, units)
	waitWindow("the control bay's polls before the kill")
	mid := sharedLineRequests(mb, units)
	pids := pluginPIDs(t, w.gw.pid(), pluginPath)
	if len(pids) != 1 {
		t.Fatalf("plugin processes %v, want exactly one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitWindow("the control bay's polls while the plugin restarts")
	after := sharedLineRequests(mb, units)

	var restarted int
	deadline = time.Now().Add(30 * time.Second)
	for {
		if now := pluginPIDs(t, w.gw.pid(), pluginPath); len(now) == 1 && now[0] != pids[0] {
			restarted = now[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin (pid %d, SIGKILLed) was not restarted within 30 s", pids[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("plugin pid %d killed, restarted as pid %d", pids[0], restarted)
	w.waitFault("sign-north", "plugin_crashed", "active")
	w.waitFault("sign-north", "plugin_crashed", "cleared")
	// The status page shows the new process, its restart and the path its
	// polls take.
	w.waitDevice("sign-north", func(d map[string]any) bool {
		det, _ := d["details"].(map[string]any)
		return det != nil && num(det["pid"]) == float64(restarted) && num(det["restarts"]) >= 1 &&
			det["direct"] == true && det["state"] == "running"
	})
	// The restarted plugin's readings reach InfluxDB.
	signs.Set(1, display.Status{Shown: 77, Brightness: 4, TempC: 19})
	w.waitDisplay("sign-north", func(r map[string]any) bool { return num(r["shown"]) == 77 && num(r["brightness"]) == 4 })

	// Each simulator saw its own frames only, and every one of them whole.
	if st := mb.Stats(); st.CRCErrors != 0 || st.DroppedBytes != 0 || st.Ignored != 0 {
		t.Errorf("Modbus simulator: %d CRC errors, %d dropped bytes, %d frames for unknown units: display frames reached it", st.CRCErrors, st.DroppedBytes, st.Ignored)
	}
	if n, badFrames := signs.Counts(); badFrames != 0 || n == 0 {
		t.Errorf("display simulator: %d frames, %d bad: Modbus frames reached it", n, badFrames)
	}
	if m, d, g := line.counts(); m == 0 || d == 0 || g != 0 {
		t.Errorf("line: %d Modbus frames, %d display frames, %d garbage bytes; want both kinds and no garbage", m, d, g)
	}
	if !strings.Contains(w.gw.output(), "plugin started") {
		t.Errorf("gatewayd log does not show the plugin starting")
	}
	// Poll rates, in windows of the control bay's polls (see above).
	for _, u := range units {
		healthy, during := mid[u]-before[u], after[u]-mid[u]
		if healthy == 0 {
			t.Errorf("unit %d: no request while the control bay was polled %d times before the kill", u, windowPolls)
		}
		if float64(during) < 0.7*float64(healthy) {
			t.Errorf("unit %d: %d requests while the plugin was killed and restarted, %d before, each in %d polls of the control bay: the plugin stalled the line",
				u, during, healthy, windowPolls)
		}
	}
}

// sharedLine starts a simulated RS-485 line at 19200 8E1 with ultrasonic
// bay sensors at units and a guidance display at address 1, on a pty.
func sharedLine(t *testing.T, name string, units []byte) (*modbussim.Server, map[byte]*modbussim.Sensor, *displaysim.Sim, *ptypair.Pair, *lineMux) {
	t.Helper()
	mb, err := modbussim.NewServer(modbussim.Config{Name: name, Line: modbussim.Line{Baud: 19200, CharBits: 11}})
	if err != nil {
		t.Fatal(err)
	}
	sensors := map[byte]*modbussim.Sensor{}
	for _, u := range units {
		if sensors[u], err = modbussim.NewSensor(mb, u, modbussim.Ultrasonic, uint64(u)); err != nil {
			t.Fatal(err)
		}
	}
	signs := displaysim.New(1)
	pair, err := ptypair.Open(filepath.Join(t.TempDir(), "tty-"+name))
	if err != nil {
		t.Fatal(err)
	}
	return mb, sensors, signs, pair, startLineMux(t, pair, mb, signs)
}

// buildPlugin builds a plugin program into a temporary directory and
// returns its path and SHA-256.
func buildPlugin(t *testing.T, pkg string) (string, string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", path, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	sum, err := host.Checksum(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, sum
}

// pluginPIDs lists the running children of gatewayd whose program is path.
func pluginPIDs(t *testing.T, parent int, path string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after ')'.
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[0] == "Z" || f[1] != strconv.Itoa(parent) {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && exe == path {
			out = append(out, pid)
		}
	}
	return out
}

func sharedLineRequests(s *modbussim.Server, units []byte) map[byte]uint64 {
	out := map[byte]uint64{}
	for _, u := range units {
		out[u] = s.Unit(u).Stats().Requests
	}
	return out
}

// waitDisplay waits for the device's last guidance_display point to
// satisfy ok and returns it.
func (w *world) waitDisplay(device string, ok func(map[string]any) bool) map[string]any {
	w.t.Helper()
	q := fmt.Sprintf(`SELECT * FROM "guidance_display" WHERE "device"='%s' ORDER BY time DESC LIMIT 1`, device)
	var last map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		series, err := w.influx.Query(w.db, q)
		if err != nil {
			w.t.Fatal(err)
		}
		if len(series) == 1 && len(series[0].Values) == 1 {
			last = series[0].Rows()[0]
			if ok(last) {
				return last
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: guidance_display in InfluxDB is %v after 30 s, not what the simulator shows", device, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitBay waits for the bay sensor's last parking_bay point to show occ.
func (w *world) waitBay(device string, occ bool) {
	w.t.Helper()
	q := fmt.Sprintf(`SELECT "occupied" FROM "parking_bay" WHERE "device"='%s' ORDER BY time DESC LIMIT 1`, device)
	deadline := time.Now().Add(30 * time.Second)
	for {
		series, err := w.influx.Query(w.db, q)
		if err != nil {
			w.t.Fatal(err)
		}
		if len(series) == 1 && len(series[0].Values) == 1 && series[0].Rows()[0]["occupied"] == occ {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: parking_bay did not reach occupied=%v in InfluxDB within 30 s (%v)", device, occ, series)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitFault waits for a fault event of the device with code and state.
func (w *world) waitFault(device, code, state string) {
	w.t.Helper()
	q := fmt.Sprintf(`SELECT "state", "message" FROM "fault" WHERE "device"='%s' AND "code"='%s'`, device, code)
	deadline := time.Now().Add(30 * time.Second)
	for {
		series, err := w.influx.Query(w.db, q)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, s := range series {
			for _, r := range s.Rows() {
				if r["state"] == state {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: no fault %s %s in InfluxDB within 30 s (%v)", device, code, state, series)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitDevice waits for the device's entry in gatewayd's /status to
// satisfy ok and returns it.
func (w *world) waitDevice(id string, ok func(map[string]any) bool) map[string]any {
	w.t.Helper()
	var last map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st := w.gatewayStatus(); st != nil {
			devs, _ := st["devices"].([]any)
			for _, d := range devs {
				if m, _ := d.(map[string]any); m != nil && m["id"] == id {
					last = m
					if ok(m) {
						return m
					}
				}
			}
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(last)
			w.t.Fatalf("device %s in /status after 30 s: %s", id, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lineMux stands for a multi-drop RS-485 line with two kinds of device on
// it: it reads what the gateway writes to the line (the pty master),
// recognises each frame's protocol by its framing (a display frame starts
// with STX and ends with ETX; anything else is a Modbus RTU request, whose
// length its function code gives), hands each frame to its simulator over
// an in-memory pipe and writes the simulators' replies back to the line.
// Each simulator sees only its own protocol's frames, as each device on a
// real line ignores frames it cannot parse.
type lineMux struct {
	master                   *os.File
	wmu                      sync.Mutex
	toModbus, toDisplay      net.Conn
	modbusN, displayN, junkN atomic.Int64
}

func startLineMux(t *testing.T, pair *ptypair.Pair, mb *modbussim.Server, ds *displaysim.Sim) *lineMux {
	t.Helper()
	m := &lineMux{master: pair.Master}
	mbSim, mbMux := net.Pipe()
	dsSim, dsMux := net.Pipe()
	m.toModbus, m.toDisplay = mbMux, dsMux
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(5)
	go func() { defer wg.Done(); mb.Serve(ctx, mbSim) }()
	go func() { defer wg.Done(); ds.Serve(dsSim) }()
	go func() { defer wg.Done(); m.replies(mbMux) }()
	go func() { defer wg.Done(); m.replies(dsMux) }()
	go func() { defer wg.Done(); m.requests() }()
	t.Cleanup(func() {
		cancel()
		pair.Close()
		for _, c := range []net.Conn{mbSim, mbMux, dsSim, dsMux} {
			c.Close()
		}
		wg.Wait()
	})
	return m
}

func (m *lineMux) counts() (modbus, display, junk int64) {
	return m.modbusN.Load(), m.displayN.Load(), m.junkN.Load()
}

// read reads the pty master through the runtime's poller, so that closing
// the pair ends a waiting read: the master is in blocking mode (the pty
// package calls Fd on it), where a plain Read would wait on past Close.
func (m *lineMux) read(buf []byte) (int, error) {
	rc, err := m.master.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		avail, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ)
		if err != nil {
			n, rerr = 0, err
			return true
		}
		if avail == 0 {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if k, _ := unix.Poll(pfd, 0); k > 0 && pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
				n, rerr = 0, io.EOF
				return true
			}
			return false
		}
		n, rerr = unix.Read(int(fd), buf[:min(avail, len(buf))])
		return true
	})
	if err != nil {
		return 0, err
	}
	if rerr == nil && n <= 0 {
		rerr = io.EOF
	}
	return max(n, 0), rerr
}

// replies copies a simulator's replies onto the line.
func (m *lineMux) replies(from net.Conn) {
	buf := make([]byte, 256)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			m.wmu.Lock()
			_, werr := m.master.Write(buf[:n])
			m.wmu.Unlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// requests splits the gateway's bytes into frames and routes them.
func (m *lineMux) requests() {
	var buf []byte
	chunk := make([]byte, 512)
	for {
		n, err := m.read(chunk)
		if err != nil {
			return
		}
		buf = append(buf, chunk[:n]...)
		for len(buf) > 0 {
			kind, size := splitLine(buf)
			if size == 0 {
				break // wait for the rest of the frame
			}
			frame := buf[:size]
			var werr error
			switch kind {
			case frameModbus:
				m.modbusN.Add(1)
				_, werr = m.toModbus.Write(frame)
			case frameDisplay:
				m.displayN.Add(1)
				_, werr = m.toDisplay.Write(frame)
			default:
				m.junkN.Add(int64(size))
			}
			if werr != nil {
				return
			}
			buf = append(buf[:0], buf[size:]...)
		}
	}
}

const (
	frameJunk = iota
	frameModbus
	frameDisplay
)

// splitLine finds the first frame in buf: its kind and length, or length
// 0 when more bytes are needed. A byte that begins no frame is junk.
func splitLine(buf []byte) (kind, size int) {
	if buf[0] == display.STX {
		if i := bytes.IndexByte(buf, display.ETX); i >= 0 {
			return frameDisplay, i + 1
		}
		if len(buf) > display.MaxFrame {
			return frameJunk, 1
		}
		return frameDisplay, 0
	}
	if len(buf) < 2 {
		return frameModbus, 0
	}
	n := 0
	switch fc := buf[1]; {
	case fc >= 1 && fc <= 6:
		n = 8 // unit, function, address, quantity or value, CRC
	case fc == 15 || fc == 16:
		if len(buf) < 7 {
			return frameModbus, 0
		}
		n = 9 + int(buf[6]) // unit, function, address, quantity, byte count, data, CRC
	default:
		return frameJunk, 1
	}
	if len(buf) < n {
		return frameModbus, 0
	}
	return frameModbus, n
}

// The line multiplexer's framing: display frames by STX…ETX, Modbus
// requests by their function code's length, partial frames wait, and a
// byte that begins no frame is junk.
func TestSplitLine(t *testing.T) {
	q, err := display.Append(nil, display.Frame{Addr: 1, Cmd: 'Q'})
	if err != nil {
		t.Fatal(err)
	}
	read := []byte{10, 0x03, 0x00, 0x00, 0x00, 0x06, 0xC5, 0x77}
	writeMulti := []byte{11, 0x10, 0x00, 0x02, 0x00, 0x01, 0x02, 0x00, 0x01, 0xAA, 0xBB}
	for _, c := range []struct {
		name       string
		in         []byte
		kind, size int
	}{
		{"display", append(append([]byte(nil), q...), read...), frameDisplay, len(q)},
		{"display partial", q[:len(q)-1], frameDisplay, 0},
		{"modbus read", append(append([]byte(nil), read...), q...), frameModbus, 8},
		{"modbus read partial", read[:5], frameModbus, 0},
		{"modbus write multiple", writeMulti, frameModbus, len(writeMulti)},
		{"modbus write multiple partial", writeMulti[:6], frameModbus, 0},
		{"unknown function", []byte{10, 0x2B, 0x0E}, frameJunk, 1},
		{"overlong display", append([]byte{display.STX}, bytes.Repeat([]byte{'A'}, display.MaxFrame)...), frameJunk, 1},
	} {
		kind, size := splitLine(c.in)
		if kind != c.kind || size != c.size {
			t.Errorf("%s: kind %d size %d, want kind %d size %d", c.name, kind, size, c.kind, c.size)
		}
	}
}
