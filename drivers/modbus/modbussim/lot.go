package modbussim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"github.com/luling-edge/luling/internal/ptypair"
)

// LotConfig configures a simulated car park.
type LotConfig struct {
	// Bays is the number of bays, numbered from 1.
	Bays int
	// Buses is the number of RS-485 buses the bays are spread over, in
	// consecutive blocks (default 1). A bus carries at most 247 bays, with
	// unit addresses 1..n.
	Buses int
	// Line is every bus's speed and character format.
	Line Line
	// Seed makes the lot reproducible: the same seed and the same script
	// give the same change log.
	Seed uint64
	// Ultrasonic is the share of ultrasonic sensors, 0..1; the others are
	// geomagnetic. They are interleaved evenly, bay 1 ultrasonic first
	// when the share is above zero.
	Ultrasonic float64
	// MeanFree and MeanStay are the mean times, in simulated time, that a
	// bay stays free and that a car stays; both are drawn from exponential
	// distributions (defaults 20 and 40 minutes).
	MeanFree, MeanStay time.Duration
	// Speed is how many simulated seconds pass per wall-clock second in Run
	// (default 1); 60 shows an hour of traffic in a minute.
	Speed float64
	// Dir, when set, is where the buses' stable links go: Dir/ttyBUS0,
	// Dir/ttyBUS1, ... A gateway configured with a link finds its bus again
	// after Unplug and Replug.
	Dir string
	// LogLimit bounds the change log; the oldest changes go first (default 10000).
	LogLimit int
	// Logger receives arrivals, departures and bus events; nil discards them.
	Logger *slog.Logger
}

// Change is one entry of a Lot's change log.
type Change struct {
	Bay      int
	Bus      int  // bus index, from 0
	Unit     byte // unit address on the bus
	Occupied bool
	// Sim is the simulated time since the lot started; it is reproducible.
	Sim time.Duration
	// At is the wall-clock time of the change.
	At time.Time
	// Manual is set for changes made by SetOccupied.
	Manual bool
}

// BayInfo tells where a bay's sensor sits.
type BayInfo struct {
	Bay   int
	Bus   int
	Unit  byte
	Model Model
}

// BusInfo describes one bus of a lot.
type BusInfo struct {
	Index int
	// Name is the bus's name in a gateway config (rs485-1, rs485-2, ...).
	Name string
	// Path is the path a gateway opens: the stable link, or the pty slave.
	Path string
	// FirstBay and LastBay bound the bus's bays; their units are 1..LastBay-FirstBay+1.
	FirstBay, LastBay int
	// Plugged reports whether the bus's pty exists.
	Plugged bool
}

// Lot is a car park of bay sensors on several simulated buses, with cars
// arriving and leaving at random, reproducibly from a seed. Each bus is a
// Server on its own pty pair. Its methods are safe for concurrent use.
type Lot struct {
	cfg    LotConfig
	logger *slog.Logger

	mu       sync.Mutex
	bays     []*lotBay
	buses    []*lotBus
	now      time.Duration // simulated time
	paused   bool
	pausedAt time.Duration
	log      []Change
	closed   bool
	wake     chan struct{}
}

type lotBay struct {
	info   BayInfo
	sensor *Sensor
	rng    *rand.Rand // the arrival/departure process
	occ    bool
	next   time.Duration // simulated time of the next random change
}

type lotBus struct {
	info   BusInfo
	link   string
	server *Server
	pair   *ptypair.Pair
	cancel context.CancelFunc
	done   chan struct{}
}

// NewLot builds the lot, opens a pty per bus and starts serving them. Cars
// move only in Run or Advance. Close releases it.
func NewLot(cfg LotConfig) (*Lot, error) {
	if cfg.Buses == 0 {
		cfg.Buses = 1
	}
	switch {
	case cfg.Bays < 1:
		return nil, fmt.Errorf("modbussim: lot: %d bays: want at least 1", cfg.Bays)
	case cfg.Buses < 1:
		return nil, fmt.Errorf("modbussim: lot: %d buses: want at least 1", cfg.Buses)
	case cfg.Buses > cfg.Bays:
		return nil, fmt.Errorf("modbussim: lot: %d buses for %d bays: want no more buses than bays", cfg.Buses, cfg.Bays)
	case (cfg.Bays+cfg.Buses-1)/cfg.Buses > maxUnit:
		return nil, fmt.Errorf("modbussim: lot: %d bays on %d buses: at most %d bays per bus", cfg.Bays, cfg.Buses, maxUnit)
	case math.IsNaN(cfg.Ultrasonic) || cfg.Ultrasonic < 0 || cfg.Ultrasonic > 1:
		return nil, fmt.Errorf("modbussim: lot: ultrasonic share %v: want 0..1", cfg.Ultrasonic)
	case cfg.MeanFree < 0 || cfg.MeanStay < 0:
		return nil, fmt.Errorf("modbussim: lot: negative mean time (free %v, stay %v)", cfg.MeanFree, cfg.MeanStay)
	case math.IsNaN(cfg.Speed) || math.IsInf(cfg.Speed, 0) || cfg.Speed < 0:
		return nil, fmt.Errorf("modbussim: lot: speed %v: want a positive factor", cfg.Speed)
	}
	if err := cfg.Line.Validate(); err != nil {
		return nil, fmt.Errorf("modbussim: lot: %w", err)
	}
	if cfg.MeanFree == 0 {
		cfg.MeanFree = 20 * time.Minute
	}
	if cfg.MeanStay == 0 {
		cfg.MeanStay = 40 * time.Minute
	}
	if cfg.Speed == 0 {
		cfg.Speed = 1
	}
	if cfg.LogLimit <= 0 {
		cfg.LogLimit = 10000
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Lot{cfg: cfg, logger: logger, wake: make(chan struct{}, 1)}

	per, extra := cfg.Bays/cfg.Buses, cfg.Bays%cfg.Buses
	bay := 1
	for bi := 0; bi < cfg.Buses; bi++ {
		n := per
		if bi < extra {
			n++
		}
		b := &lotBus{info: BusInfo{Index: bi, Name: fmt.Sprintf("rs485-%d", bi+1), FirstBay: bay, LastBay: bay + n - 1}}
		if cfg.Dir != "" {
			b.link = filepath.Join(cfg.Dir, fmt.Sprintf("ttyBUS%d", bi))
		}
		srv, err := NewServer(Config{Name: b.info.Name, Line: cfg.Line, Logger: logger})
		if err != nil {
			return nil, err
		}
		b.server = srv
		for u := 1; u <= n; u++ {
			m := l.modelOf(bay)
			s, err := NewSensor(srv, byte(u), m, cfg.Seed^0x5eed_0000_0000_0000^uint64(bay)<<16)
			if err != nil {
				return nil, err
			}
			lb := &lotBay{
				info:   BayInfo{Bay: bay, Bus: bi, Unit: byte(u), Model: m},
				sensor: s,
				rng:    rand.New(rand.NewPCG(cfg.Seed, uint64(bay))),
			}
			lb.next = l.draw(lb)
			l.bays = append(l.bays, lb)
			bay++
		}
		l.buses = append(l.buses, b)
	}
	for _, b := range l.buses {
		if err := l.plug(b); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// modelOf spreads the ultrasonic share evenly over the bays.
func (l *Lot) modelOf(bay int) Model {
	share := l.cfg.Ultrasonic
	at := func(i int) float64 { return math.Ceil(math.Round(float64(i)*share*1e9) / 1e9) }
	if at(bay) > at(bay-1) {
		return Ultrasonic
	}
	return Geomagnetic
}

// draw schedules a bay's next random change from the current time.
func (l *Lot) draw(b *lotBay) time.Duration {
	mean := l.cfg.MeanFree
	if b.occ {
		mean = l.cfg.MeanStay
	}
	d := time.Duration(b.rng.ExpFloat64() * float64(mean))
	return l.now + max(d, time.Second)
}

// plug opens the bus's pty (behind its link) and serves it.
func (l *Lot) plug(b *lotBus) error {
	p, err := ptypair.Open(b.link)
	if err != nil {
		return fmt.Errorf("modbussim: lot: bus %s: %w", b.info.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.pair, b.cancel, b.done = p, cancel, make(chan struct{})
	b.info.Path, b.info.Plugged = p.Path(), true
	go func(done chan struct{}) {
		defer close(done)
		if err := b.server.Serve(ctx, p.Master); err != nil && ctx.Err() == nil {
			l.logger.Warn("bus stopped serving", "bus", b.info.Name, "err", err)
		}
	}(b.done)
	l.logger.Info("bus plugged in", "bus", b.info.Name, "path", b.info.Path,
		"units", fmt.Sprintf("1..%d", b.info.LastBay-b.info.FirstBay+1))
	return nil
}

// unplug stops serving the bus and closes its pty.
func (l *Lot) unplug(b *lotBus) {
	if b.pair == nil {
		return
	}
	b.cancel()
	b.pair.Close()
	<-b.done
	b.pair, b.info.Plugged = nil, false
	l.logger.Info("bus unplugged", "bus", b.info.Name)
}

func (l *Lot) bus(i int) (*lotBus, error) {
	if i < 0 || i >= len(l.buses) {
		return nil, fmt.Errorf("modbussim: lot: bus %d: want 0..%d", i, len(l.buses)-1)
	}
	return l.buses[i], nil
}

func (l *Lot) bay(n int) (*lotBay, error) {
	if n < 1 || n > len(l.bays) {
		return nil, fmt.Errorf("modbussim: lot: bay %d: want 1..%d", n, len(l.bays))
	}
	return l.bays[n-1], nil
}

// Unplug closes bus i's pty, as if its USB adapter were pulled: a gateway's
// reads and writes on it fail, and the link disappears.
func (l *Lot) Unplug(i int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := l.bus(i)
	if err != nil {
		return err
	}
	l.unplug(b)
	return nil
}

// Replug gives bus i a new pty behind the same link and serves it again;
// its units keep their registers and counters.
func (l *Lot) Replug(i int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("modbussim: lot: closed")
	}
	b, err := l.bus(i)
	if err != nil {
		return err
	}
	if b.pair != nil {
		return fmt.Errorf("modbussim: lot: bus %s is plugged in", b.info.Name)
	}
	return l.plug(b)
}

// Close stops serving and closes every bus.
func (l *Lot) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, b := range l.buses {
		l.unplug(b)
	}
	return nil
}

// Buses describes the buses.
func (l *Lot) Buses() []BusInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]BusInfo, len(l.buses))
	for i, b := range l.buses {
		out[i] = b.info
	}
	return out
}

// Bays describes the bays, in order.
func (l *Lot) Bays() []BayInfo {
	out := make([]BayInfo, len(l.bays))
	for i, b := range l.bays {
		out[i] = b.info
	}
	return out
}

// Server is bus i's line, or nil.
func (l *Lot) Server(i int) *Server {
	b, err := l.bus(i)
	if err != nil {
		return nil
	}
	return b.server
}

// Sensor is bay n's sensor, or nil.
func (l *Lot) Sensor(n int) *Sensor {
	b, err := l.bay(n)
	if err != nil {
		return nil
	}
	return b.sensor
}

// Occupied reports whether a car stands in bay n.
func (l *Lot) Occupied(n int) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := l.bay(n)
	if err != nil {
		return false, err
	}
	return b.occ, nil
}

// LED is the colour the gateway last wrote to bay n's LED (LEDOff for a
// geomagnetic sensor).
func (l *Lot) LED(n int) (uint16, error) {
	b, err := l.bay(n)
	if err != nil {
		return 0, err
	}
	return b.sensor.LED(), nil
}

// SetOccupied puts a car into bay n or takes it out now, records the change
// (if it is one) and restarts the bay's random process from now.
func (l *Lot) SetOccupied(n int, occ bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, err := l.bay(n)
	if err != nil {
		return err
	}
	if b.occ != occ {
		l.toggle(b, true)
	}
	l.poke()
	return nil
}

// Now is the lot's simulated time.
func (l *Lot) Now() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.now
}

// SetNoise puts line noise on every bus (see Server.SetNoise): each reply
// byte is hit with chance p; 0 ends it.
func (l *Lot) SetNoise(p float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, b := range l.buses {
		b.server.SetNoise(p, l.cfg.Seed+uint64(i))
	}
}

// NoiseBytes returns the number of reply bytes line noise changed on all
// buses.
func (l *Lot) NoiseBytes() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n uint64
	for _, b := range l.buses {
		n += b.server.NoiseBytes()
	}
	return n
}

// Pause stops the random arrivals and departures; simulated time goes on.
func (l *Lot) Pause() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.paused {
		l.paused, l.pausedAt = true, l.now
	}
	l.poke()
}

// Resume restarts the random process where Pause stopped it: every pending
// change is put off by the paused time.
func (l *Lot) Resume() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paused {
		l.paused = false
		for _, b := range l.bays {
			b.next += l.now - l.pausedAt
		}
	}
	l.poke()
}

// Changes returns the change log, oldest first.
func (l *Lot) Changes() []Change {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Change(nil), l.log...)
}

// Advance moves simulated time on by d and applies every random change
// due on the way, in time order (ties by bay number). Tests script a lot
// with it; Run calls it in step with the wall clock.
func (l *Lot) Advance(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advanceTo(l.now + max(d, 0))
}

func (l *Lot) advanceTo(t time.Duration) {
	for !l.paused {
		var first *lotBay
		for _, b := range l.bays {
			if b.next <= t && (first == nil || b.next < first.next) {
				first = b
			}
		}
		if first == nil {
			break
		}
		l.now = first.next
		l.toggle(first, false)
	}
	l.now = max(l.now, t)
}

// toggle flips a bay, logs it and draws its next change.
func (l *Lot) toggle(b *lotBay, manual bool) {
	b.occ = !b.occ
	b.sensor.SetOccupied(b.occ)
	b.next = l.draw(b)
	c := Change{Bay: b.info.Bay, Bus: b.info.Bus, Unit: b.info.Unit, Occupied: b.occ, Sim: l.now, At: time.Now(), Manual: manual}
	if len(l.log) >= l.cfg.LogLimit {
		n := copy(l.log, l.log[1:])
		l.log = l.log[:n]
	}
	l.log = append(l.log, c)
	what := "car left"
	if b.occ {
		what = "car arrived"
	}
	l.logger.Info(what, "bay", c.Bay, "bus", l.buses[c.Bus].info.Name, "unit", c.Unit,
		"model", b.info.Model.Profile(), "sim", c.Sim.Round(time.Second), "manual", manual)
}

func (l *Lot) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// nextDue is the simulated time of the next random change.
func (l *Lot) nextDue() time.Duration {
	next := time.Duration(math.MaxInt64)
	for _, b := range l.bays {
		next = min(next, b.next)
	}
	return next
}

// Run moves the cars in step with the wall clock, Speed simulated seconds
// per second, and refreshes the sensors' noisy measurements about once a
// second, until ctx ends.
func (l *Lot) Run(ctx context.Context) error {
	refresh := time.NewTicker(time.Second)
	defer refresh.Stop()
	wallRef := time.Now()
	l.mu.Lock()
	simRef := l.now
	l.mu.Unlock()
	for {
		l.mu.Lock()
		wait := time.Hour
		l.advanceTo(simRef + time.Duration(float64(time.Since(wallRef))*l.cfg.Speed))
		if due := l.nextDue() - l.now; !l.paused && due < time.Duration(float64(time.Hour)*l.cfg.Speed) {
			wait = time.Duration(float64(due)/l.cfg.Speed) + time.Millisecond
		}
		l.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		case <-l.wake:
			timer.Stop()
			// A manual change or a pause moved the clock's reference.
			l.mu.Lock()
			if simRef+time.Duration(float64(time.Since(wallRef))*l.cfg.Speed) < l.now {
				wallRef, simRef = time.Now(), l.now
			}
			l.mu.Unlock()
		case <-refresh.C:
			timer.Stop()
			for _, b := range l.bays {
				b.sensor.Refresh()
			}
		}
	}
}
