package e2e

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luling-edge/luling/drivers/modbus"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/firmware-config/profiles"
	"github.com/luling-edge/luling/internal/testenv"
)

// smallQueueBroker is Mosquitto with persistence (a restart keeps sessions
// and queues) but a small queue per client: while cloudd stalls, the
// broker drops what it already acknowledged to the gateway (PUBACK), as a
// production broker under pressure does. Only the gateway can send it
// again.
func smallQueueBroker(port int, dir string) string {
	return fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
user root
persistence true
persistence_location %s/
autosave_interval 1
max_inflight_messages 10
max_queued_messages 20
log_dest stdout
log_type error
`, port, dir)
}

// The faults a soak round injects while bays change.
const (
	faultNone        = "none"
	faultBroker      = "broker restart"
	faultKillGateway = "kill -9 gatewayd"
	faultBrokerDrop  = "broker drop after PUBACK"
	faultCut         = "network cut"
	faultBlackHole   = "black hole"
	faultKillCloud   = "kill -9 cloudd"
	faultInflux      = "influxdb down"
	faultDiskFull    = "disk full"
	faultCorrupt     = "corrupt segment"
	faultNoise       = "line noise"
)

var soakFaults = []string{faultNone, faultBroker, faultKillGateway, faultBrokerDrop, faultCut, faultBlackHole,
	faultKillCloud, faultInflux, faultDiskFull, faultCorrupt, faultNoise}

// lossyFaults may lose readings, but only declared ones: the gateway
// says which sequence numbers it dropped and cloudd counts them as
// declared lost. Under any other fault a reading that does not land is an
// undeclared loss.
var lossyFaults = []string{faultDiskFull, faultCorrupt}

// soakLanding is how long after a change its reading may be observed: one
// poll, retries on a noisy line, and a busy machine.
const soakLanding = 3 * time.Second

// soakNoise is the chance of line noise hitting a reply byte during the
// line-noise fault: about 5% of the bay sensors' 17-byte replies.
const soakNoise = 0.003

// soakOutboxBytes is the size of the tmpfs that holds gatewayd's outbox.
const soakOutboxBytes = 4 << 20

// soakRound is what one round produced and what was counted meanwhile.
type soakRound struct {
	fault   string
	changes []change
	counts  soakCounts
}

// soakCounts are the counters the soak accounts per round: cloudd's
// sequence numbers declared lost, declared unused (skipped) and lost
// without a word; the records gatewayd's outbox dropped (and declared),
// and those it refused.
type soakCounts struct{ declared, skipped, lost, dropped, refused uint64 }

func (a soakCounts) plus(b soakCounts) soakCounts {
	return soakCounts{a.declared + b.declared, a.skipped + b.skipped, a.lost + b.lost, a.dropped + b.dropped, a.refused + b.refused}
}

func (a soakCounts) minus(b soakCounts) soakCounts {
	return soakCounts{a.declared - b.declared, a.skipped - b.skipped, a.lost - b.lost, a.dropped - b.dropped, a.refused - b.refused}
}

// soak is the state of a TestSoak run.
type soak struct {
	*world
	rng     *rand.Rand
	initial map[int]bool // every bay's state before the first change
	tmpfs   string       // the mounted tmpfs holding the outbox; "" when mount failed
	base    soakCounts   // counted by the cloudd and gatewayd processes killed so far
}

// counts reads the counters, adding those of the processes killed before.
func (s *soak) counts() soakCounts {
	return s.base.plus(s.cloudCounts()).plus(s.gatewayCounts())
}

func (s *soak) cloudCounts() soakCounts {
	g := s.cloudStats()
	return soakCounts{declared: g.Seq.DeclaredLost, skipped: g.Seq.Skipped, lost: g.Seq.Lost}
}

func (s *soak) gatewayCounts() soakCounts {
	p, _ := s.statusPart("pipeline").(map[string]any)
	refused, _ := p["refused"].(float64)
	o, _ := s.statusPart("outbox").(map[string]any)
	dropped, _ := o["dropped_records"].(float64)
	return soakCounts{dropped: uint64(dropped), refused: uint64(refused)}
}

// killGateway kills gatewayd with SIGKILL, keeping its counters.
func (s *soak) killGateway() {
	s.base = s.base.plus(s.gatewayCounts())
	s.gw.signal(syscall.SIGKILL)
}

// pause is the soak's random script: how long traffic runs or a fault lasts.
func (s *soak) pause(least, spread int) {
	time.Sleep(time.Duration(least)*time.Second + time.Duration(s.rng.IntN(spread*1000+1))*time.Millisecond)
}

// TestSoak runs the whole system for LULING_SOAK_DURATION (default 30m)
// under a steady stream of occupancy changes while, round after round, a
// fault strikes (every one at least once, even in a short run): the broker
// restarts; gatewayd or cloudd is killed with SIGKILL; cloudd stalls
// (SIGSTOP) behind a broker with a small queue, which then drops messages
// it had acknowledged to the gateway; the network between gatewayd and the
// broker is cut or turns into a black hole (a proxy the test controls);
// InfluxDB is down; the outbox's disk fills up; a stored, unconfirmed
// segment is corrupted; the serial line is noisy. After each round the
// soak waits until the cloud confirmed everything, so that what cloudd
// counted is the round's. At the end a table says, per fault, how many
// changes were produced, how many landed in InfluxDB, and how many were
// lost declared (only under a disk that fills or a corrupted segment) or
// undeclared; undeclared must be 0 everywhere. Nothing may land that was
// not a change, and no value outside its profile's range.
// It runs only with LULING_SOAK=1 (make soak).
func TestSoak(t *testing.T) {
	if os.Getenv("LULING_SOAK") == "" {
		t.Skip("soak: set LULING_SOAK=1 (make soak)")
	}
	total := 30 * time.Minute
	if v := os.Getenv("LULING_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LULING_SOAK_DURATION=%q: %v", v, err)
		}
		total = d
	}
	s := &soak{rng: rand.New(rand.NewPCG(1, 2))}
	faults := slices.Clone(soakFaults)
	if v := os.Getenv("LULING_SOAK_FAULTS"); v != "" { // to chase one fault: "none,disk full"
		faults = strings.Split(v, ",")
		for _, f := range faults {
			if !slices.Contains(soakFaults, f) {
				t.Fatalf("LULING_SOAK_FAULTS: %q: want some of %q", f, soakFaults)
			}
		}
	}
	s.tmpfs = t.TempDir()
	if err := syscall.Mount("tmpfs", s.tmpfs, "tmpfs", 0, fmt.Sprintf("size=%d", soakOutboxBytes)); err != nil {
		t.Logf("soak: fault %q left out: cannot mount a %d-byte tmpfs for the outbox on %s: %v (it needs root or CAP_SYS_ADMIN)",
			faultDiskFull, soakOutboxBytes, s.tmpfs, err)
		s.tmpfs = ""
		faults = slices.DeleteFunc(faults, func(f string) bool { return f == faultDiskFull })
	} else {
		dir := s.tmpfs
		t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	}
	o := worldOptions{bays: 32, buses: 2, poll: 200 * time.Millisecond, brokerConf: smallQueueBroker, proxy: true, keepalive: 2 * time.Second}
	if s.tmpfs != "" {
		o.outboxDir = filepath.Join(s.tmpfs, "outbox")
	}
	s.world = newWorld(t, o)
	w := s.world
	if dir := os.Getenv("LULING_SOAK_LOGS"); dir != "" { // whole logs, for a failure the last 4 KiB do not explain
		t.Cleanup(func() {
			os.WriteFile(filepath.Join(dir, "gatewayd.log"), []byte(w.gw.output()), 0o644)
			os.WriteFile(filepath.Join(dir, "cloudd.log"), []byte(w.cloud.output()), 0o644)
		})
	}
	w.waitInitial()
	s.initial = w.initialState()

	var rounds []soakRound
	end := time.Now().Add(total)
	// The sleeps below are the soak's random script (traffic, outages,
	// kills); the checks afterwards judge what arrived, not when.
	for round := 0; round < len(faults) || time.Now().Before(end); round++ {
		before := s.counts()
		stop := make(chan struct{})
		log := w.stream(100*time.Millisecond, stop)
		fault := faults[s.rng.IntN(len(faults))]
		if round < len(faults) {
			fault = faults[(round+1)%len(faults)] // every fault early, even in a short run
			s.pause(2, 4)
		} else {
			s.pause(5, 15)
		}
		got := s.inject(fault, stop, log)
		s.quiesce(fault)
		c := s.counts().minus(before)
		rounds = append(rounds, soakRound{fault: fault, changes: got, counts: c})
		t.Logf("round %d (%s): %d changes; cloudd: %d declared lost, %d skipped, %d lost; gatewayd dropped %d records, refused %d",
			round, fault, len(got), c.declared, c.skipped, c.lost, c.dropped, c.refused)
	}
	// A last quiet round changes every bay, so that InfluxDB's last point
	// of each is fresh whatever the last fault lost.
	stop := make(chan struct{})
	log := w.stream(100*time.Millisecond, stop)
	time.Sleep(time.Duration(len(w.lot.Bays())+8) * 100 * time.Millisecond)
	close(stop)
	rounds = append(rounds, soakRound{fault: faultNone, changes: <-log})

	pts := w.settle(3 * time.Minute)
	s.report(rounds, pts, faults)
	var all []change
	for _, r := range rounds {
		all = append(all, r.changes...)
	}
	s.checkNoStrays(pts, all)
	s.checkPlausible()
	w.checkLot()
	g := w.cloudStats()
	if g.Seq.GapsOpen != 0 || g.Seq.Conflicts != 0 || len(g.Rejected) != 0 || len(g.Dropped) != 0 {
		t.Errorf("cloudd: open gaps %d, conflicts %d, rejected %v, dropped records %v; want none",
			g.Seq.GapsOpen, g.Seq.Conflicts, g.Rejected, g.Dropped)
	}
}

// inject runs fault while the stream goes on, ends the stream and returns
// its changes.
func (s *soak) inject(fault string, stop chan struct{}, log <-chan []change) []change {
	t, w := s.t, s.world
	end := func() []change { close(stop); return <-log }
	switch fault {
	case faultBroker: // while changes go on
		w.broker.Stop()
		s.pause(1, 4)
		w.broker.Start()
		time.Sleep(time.Second)
		return end()
	case faultKillGateway: // after its last change was committed
		got := end()
		time.Sleep(3*w.poll + config.DefaultTelemetryWindow) // polled, and out of the window
		s.killGateway()
		s.pause(0, 2)
		w.restartGateway()
		return got
	case faultBrokerDrop: // cloudd stalls; its queue overflows
		if err := syscall.Kill(w.cloud.pid(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		s.pause(3, 5)
		if err := syscall.Kill(w.cloud.pid(), syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		return end()
	case faultCut:
		w.proxy.Cut()
		s.pause(3, 7)
		s.restoreProxy()
		time.Sleep(time.Second)
		return end()
	case faultBlackHole:
		// Only gatewayd's keep-alive can tell: the connection stays open.
		losses := s.uplinkLosses()
		w.proxy.BlackHole()
		s.pause(3, 5)
		testenv.WaitFor(t, 60*time.Second, "gatewayd to notice the black hole", func() bool { return s.uplinkLosses() > losses })
		s.restoreProxy()
		time.Sleep(time.Second)
		return end()
	case faultKillCloud:
		s.base = s.base.plus(s.cloudCounts())
		w.cloud.signal(syscall.SIGKILL)
		s.pause(0, 3)
		w.cloud.start(t)
		w.waitHTTP(w.cloudAPI + "/healthz")
		time.Sleep(time.Second)
		return end()
	case faultInflux:
		w.influx.Stop()
		s.pause(5, 10)
		if err := w.influx.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		return end()
	case faultDiskFull:
		return s.fillDisk(end)
	case faultCorrupt:
		return s.corruptSegment(end)
	case faultNoise:
		noisy := w.lot.NoiseBytes()
		w.lot.SetNoise(soakNoise)
		s.pause(5, 10)
		w.lot.SetNoise(0)
		quiet := time.Now()
		if w.lot.NoiseBytes() == noisy {
			t.Errorf("line noise: no reply byte was hit")
		}
		// Devices that missed replies back off (up to 30 s); the next
		// round starts when every one answered again.
		testenv.WaitFor(t, time.Minute, "every device to answer after the noise", func() bool { return s.allAnsweredSince(quiet) })
		return end()
	}
	return end()
}

func (s *soak) restoreProxy() {
	if err := s.proxy.Restore(); err != nil {
		s.t.Fatal(err)
	}
}

// uplinkLosses is gatewayd's count of lost broker connections.
func (s *soak) uplinkLosses() float64 {
	if st := s.gatewayStatus(); st != nil {
		if up, _ := st["uplink"].(map[string]any); up != nil {
			n, _ := up["connection_losses"].(float64)
			return n
		}
	}
	return -1
}

// fillDisk cuts the uplink, so that the outbox grows; fills the outbox's
// tmpfs with a ballast file while changes go on, so that the outbox meets
// a full disk; then empties it and restores the uplink.
func (s *soak) fillDisk(end func() []change) []change {
	t, w := s.t, s.world
	w.proxy.Cut()
	s.pause(2, 3)
	ballast := filepath.Join(s.tmpfs, "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 16<<10)
	var n int64
	for {
		m, err := f.Write(chunk)
		n += int64(m)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatalf("ballast: %v", err)
		}
	}
	f.Close()
	s.pause(4, 4)
	t.Logf("disk full: %d bytes of ballast; gatewayd outbox %v, pipeline %v", n, s.statusPart("outbox"), s.statusPart("pipeline"))
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	s.restoreProxy()
	time.Sleep(time.Second)
	return end()
}

// corruptSegment cuts the uplink so that the outbox holds unconfirmed
// messages, kills gatewayd, flips bytes in what the newest telemetry
// segment got after the cut, and starts gatewayd and the uplink again.
func (s *soak) corruptSegment(end func() []change) []change {
	t, w := s.t, s.world
	// Sizes taken after the cut: what is written after them was never sent.
	w.proxy.Cut()
	sizes := map[string]int64{}
	segs, _ := filepath.Glob(filepath.Join(w.outbox, "telemetry-*.seg"))
	for _, p := range segs {
		if fi, err := os.Stat(p); err == nil {
			sizes[p] = fi.Size()
		}
	}
	s.pause(3, 4)
	got := end()
	time.Sleep(3*w.poll + config.DefaultTelemetryWindow) // polled, and out of the window
	s.killGateway()
	segs, _ = filepath.Glob(filepath.Join(w.outbox, "telemetry-*.seg"))
	if len(segs) == 0 {
		t.Fatalf("corrupt segment: no telemetry segment in %s", w.outbox)
	}
	seg := segs[len(segs)-1] // names sort by first sequence number
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	from := sizes[seg] // written after the cut: not confirmed by the cloud
	if int64(len(b))-from < 64 {
		t.Fatalf("corrupt segment: %s has only %d bytes written after the cut", seg, int64(len(b))-from)
	}
	var at []int64
	for range 3 {
		i := from + s.rng.Int64N(int64(len(b))-from)
		b[i] ^= byte(1 + s.rng.IntN(255))
		at = append(at, i)
	}
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("corrupt segment: flipped bytes at %v of %s (%d bytes, %d after the cut)", at, filepath.Base(seg), len(b), int64(len(b))-from)
	w.restartGateway()
	s.restoreProxy()
	return got
}

// allAnsweredSince reports whether every device's last good poll is after t.
func (s *soak) allAnsweredSince(t time.Time) bool {
	devs, _ := s.statusPart("devices").([]any)
	if len(devs) == 0 {
		return false
	}
	for _, d := range devs {
		m, _ := d.(map[string]any)
		v, _ := m["last_ok"].(string)
		ok, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || !ok.After(t) {
			return false
		}
	}
	return true
}

func (s *soak) statusPart(key string) any {
	if st := s.gatewayStatus(); st != nil {
		return st[key]
	}
	return nil
}

// quiesce waits until the cloud confirmed everything the gateway stored
// and cloudd has no open gap, so that the counters read next are the
// round's.
func (s *soak) quiesce(fault string) {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if ob, _ := s.statusPart("outbox").(map[string]any); ob != nil && ob["unacked_messages"] == float64(0) {
			if g := s.cloudStats(); g.Seq.GapsOpen == 0 {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.t.Errorf("after %s: the outbox was not confirmed empty or cloudd kept a gap open for 3 minutes: outbox %v, cloudd %+v",
		fault, s.statusPart("outbox"), s.cloudStats().Seq)
}

// report prints the per-fault table and fails on any undeclared loss.
func (s *soak) report(rounds []soakRound, pts map[int][]point, injected []string) {
	type row struct {
		rounds, produced, landed, late, declared, undeclared uint64
		c                                                    soakCounts
	}
	rows := map[string]*row{}
	for _, f := range soakFaults {
		rows[f] = &row{}
	}
	var all []change
	for _, r := range rounds {
		all = append(all, r.changes...)
	}
	shown := 0
	for i, r := range rounds {
		x := rows[r.fault]
		x.rounds++
		// Landed: observed within soakLanding. Late: its state shows only
		// before the bay's next change, as when garbled replies make the
		// gateway retry or back off, or when a kill -9 took the readings of
		// the telemetry window and the first poll after the restart
		// reported the current state again (docs/design.md). Missing:
		// never shown.
		var missing uint64
		for _, c := range r.changes {
			switch {
			case landed(pts, []change{c}, soakLanding) == 1:
				x.landed++
			case landedBeforeNext(pts, []change{c}, all) == 1:
				x.late++
			default:
				missing++
				if shown++; shown <= 20 {
					s.t.Logf("round %d (%s): bay %d set occupied=%v at %v never shows in InfluxDB; its points around then: %v",
						i, r.fault, c.bay, c.occupied, c.at.Format(time.RFC3339Nano), pointsNear(pts[c.bay], c.at))
				}
			}
		}
		x.produced += uint64(len(r.changes))
		x.c = x.c.plus(r.counts)
		// A missing change is declared only where losses are expected and
		// the gateway declared some in that round; cloudd's silent losses
		// are undeclared whatever the fault.
		if slices.Contains(lossyFaults, r.fault) && r.counts.declared > 0 {
			x.declared += missing
		} else {
			x.undeclared += missing
		}
		x.undeclared += r.counts.lost
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "%-26s %6s %9s %7s %5s %13s %15s   %s\n", "fault", "rounds", "produced", "landed", "late", "declared-lost", "undeclared-lost",
		"cloudd seqs declared/skipped/lost; gatewayd records dropped/refused")
	line := func(name string, x *row) {
		fmt.Fprintf(&tbl, "%-26s %6d %9d %7d %5d %13d %15d   %d/%d/%d; %d/%d\n", name, x.rounds, x.produced, x.landed, x.late, x.declared, x.undeclared,
			x.c.declared, x.c.skipped, x.c.lost, x.c.dropped, x.c.refused)
	}
	var sum row
	for _, f := range soakFaults {
		x := rows[f]
		line(f, x)
		sum.rounds += x.rounds
		sum.produced += x.produced
		sum.landed += x.landed
		sum.late += x.late
		sum.declared += x.declared
		sum.undeclared += x.undeclared
		sum.c = sum.c.plus(x.c)
	}
	line("all", &sum)
	g := s.cloudStats()
	fmt.Fprintf(&tbl, "cloudd (since its last restart): %d messages up to seq %d; declared lost %d, skipped %d, lost undeclared %d, open gaps %d, duplicates %d, resets %d",
		g.Messages, g.Seq.LastSeq, g.Seq.DeclaredLost, g.Seq.Skipped, g.Seq.Lost, g.Seq.GapsOpen, g.Seq.Duplicates, g.Seq.Resets)
	s.t.Logf("soak result:\n%s", tbl.String())
	for _, f := range soakFaults {
		x := rows[f]
		if x.undeclared != 0 {
			s.t.Errorf("%s: %d readings lost undeclared", f, x.undeclared)
		}
		if x.c.refused != 0 {
			// A refused record has no sequence number: the cloud cannot know it is missing.
			s.t.Errorf("%s: gatewayd's outbox refused %d records", f, x.c.refused)
		}
		if x.rounds == 0 && slices.Contains(injected, f) {
			s.t.Errorf("%s: never injected", f)
		}
	}
}

// checkNoStrays asserts that every point InfluxDB holds for a bay shows a
// state the simulator had for that bay at some moment in the soakLanding
// before the point's observation time: noise, a replay or a restart put
// nothing else there.
func (s *soak) checkNoStrays(pts map[int][]point, changes []change) {
	perBay := map[int][]change{}
	for _, c := range changes {
		perBay[c.bay] = append(perBay[c.bay], c)
	}
	for bay, ps := range pts {
		cs := perBay[bay]
		slices.SortFunc(cs, func(a, b change) int { return a.at.Compare(b.at) })
		for _, p := range ps {
			// The states the bay had in [p.t-soakLanding, p.t].
			from := p.t.Add(-soakLanding)
			state, ok := s.initial[bay], false
			for _, c := range cs {
				if c.at.After(p.t) {
					break
				}
				if c.at.After(from) {
					ok = ok || state == p.occupied
				}
				state = c.occupied
			}
			if !ok && state != p.occupied {
				s.t.Errorf("bay %d: occupied=%v observed at %v in InfluxDB; the simulator never had that state in the %v before", bay, p.occupied, p.t, soakLanding)
			}
		}
	}
}

// checkPlausible asserts that no parking_bay value outside its profile's
// declared range (min/max) landed.
func (s *soak) checkPlausible() {
	ps, err := modbus.LoadProfiles(profiles.FS)
	if err != nil {
		s.t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, bay := range s.lot.Bays() {
		p := ps[bay.Model.Profile()]
		if p == nil {
			s.t.Fatalf("bay %d: no profile %q", bay.Bay, bay.Model.Profile())
		}
		for _, f := range p.Fields {
			if !f.Publish || seen[f.Name] || (math.IsNaN(f.Min) && math.IsNaN(f.Max)) {
				continue
			}
			seen[f.Name] = true
			res, err := s.influx.Query(s.db, fmt.Sprintf(`SELECT min(%q), max(%q) FROM "parking_bay"`, f.Name, f.Name))
			if err != nil {
				s.t.Fatal(err)
			}
			if len(res) == 0 || len(res[0].Values) == 0 {
				continue
			}
			lo, _ := toFloat(res[0].Values[0][1])
			hi, _ := toFloat(res[0].Values[0][2])
			if lo < f.Min || hi > f.Max {
				s.t.Errorf("parking_bay %s: values from %v to %v landed, the profile %s allows %v..%v", f.Name, lo, hi, p.Name, f.Min, f.Max)
			}
		}
	}
	if len(seen) == 0 {
		s.t.Fatal("no field with a declared range to check")
	}
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case interface{ Float64() (float64, error) }:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	}
	return 0, false
}

// pointsNear lists a bay's points from 5 s before t to 10 s after, for a
// failure report.
func pointsNear(ps []point, t time.Time) string {
	var b strings.Builder
	for _, p := range ps {
		if d := p.t.Sub(t); d >= -5*time.Second && d <= 10*time.Second {
			fmt.Fprintf(&b, "%+.2fs=%v ", d.Seconds(), p.occupied)
		}
	}
	return b.String()
}

// landedBeforeNext counts the changes that have a point of their bay with
// their state observed after them and before the bay's next change in all
// (a poll stamped before that change may read the registers just after it:
// a second of slack).
func landedBeforeNext(pts map[int][]point, changes, all []change) int {
	n := 0
	for _, c := range changes {
		until := time.Duration(math.MaxInt64)
		for _, o := range all {
			if o.bay == c.bay && o.at.After(c.at) && o.at.Sub(c.at) < until {
				until = o.at.Sub(c.at)
			}
		}
		if landed(pts, []change{c}, min(until, time.Hour)+time.Second) == 1 {
			n++
		}
	}
	return n
}

// landed counts the changes that have a point of their bay with their
// state observed within window after them.
func landed(pts map[int][]point, changes []change, window time.Duration) int {
	n := 0
	for _, c := range changes {
		for _, p := range pts[c.bay] {
			if lag := p.t.Sub(c.at); p.occupied == c.occupied && lag >= 0 && lag <= window {
				n++
				break
			}
		}
	}
	return n
}
