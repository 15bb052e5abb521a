package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/luling-edge/luling/drivers/modbus/modbussim"
	"github.com/luling-edge/luling/internal/safefile"
)

const usageText = `usage: devsim parking [flags]
       devsim gpio -config FILE [-gpio-socket PATH]
       devsim city -gateways N -devices M [-broker URL] [-duration D] [-json]

parking simulates a car park: Modbus RTU bay sensors on pseudo-terminal RS-485
buses (and, with flags, inverters, guidance signs and doors).
gpio serves the GPIO lines of a gateway config as simulated lines (gpio.simulator).
city runs N simulated gateways over N MQTT connections against cloudd (load tests).
Run "devsim parking -h", "devsim gpio -h" or "devsim city -h" for the flags; "devsim -version"
prints the version.
`

// run is devsim: it parses args, runs the chosen simulator until ctx ends
// and reports what it could not do.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return fmt.Errorf("%w: no simulator named (want: parking, gpio or city)", errUsage)
	}
	switch args[0] {
	case "parking":
		return runParking(ctx, args[1:], stdout, stderr)
	case "gpio":
		return runGPIO(ctx, args[1:], os.Stdin, stdout, stderr)
	case "city":
		return runCity(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageText)
		return nil
	case "-version", "--version":
		fmt.Fprintln(stdout, "devsim", version)
		return nil
	}
	fmt.Fprint(stderr, usageText)
	return fmt.Errorf("%w: unknown simulator %q (want: parking, gpio or city)", errUsage, args[0])
}

// parkingOptions are the parking simulator's flags.
type parkingOptions struct {
	bays, buses, baud int
	format            string
	seed              uint64
	dir               string
	rate              float64
	stay              time.Duration
	speed             float64
	mix               string
	ultrasonic        float64
	lot               string
	poll, timeout     time.Duration
	inverters         int
	doors             int
	gpioSocket        string
	accessEvery       time.Duration
	lanes             bool
	laneEvery         time.Duration
	laneJam           float64
	laneCapacity      int

	signPlugin, guidancePlugin string

	writeConfig, site, gateway, broker, outbox, statusListen string
	verbose                                                  bool

	solar   *solarBus  // the inverters, when there are any
	signs   *signBus   // the guidance signs, when there are any
	doorSim *accessSim // the doors, when there are any
	laneSim *laneBench // the entrance lanes, with --lanes
}

var nameRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// standard baud rates of the serial ports the gateway opens.
var bauds = map[int]bool{1200: true, 2400: true, 4800: true, 9600: true, 19200: true, 38400: true, 57600: true, 115200: true}

// lineFormat is a character format: bits on the wire, parity, stop bits.
type lineFormat struct {
	charBits int
	parity   string
	stopBits int
}

var formats = map[string]lineFormat{
	"8N1": {10, "none", 1},
	"8N2": {11, "none", 2},
	"8E1": {11, "even", 1},
	"8O1": {11, "odd", 1},
}

func parseParking(args []string, stderr io.Writer) (*parkingOptions, error) {
	o := &parkingOptions{}
	fs := flag.NewFlagSet("devsim parking", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.bays, "bays", 64, "number of bays, numbered from 1")
	fs.IntVar(&o.buses, "buses", 2, "number of RS-485 buses the bays are spread over (at most 247 bays each)")
	fs.IntVar(&o.baud, "baud", 19200, "line speed of every bus")
	fs.StringVar(&o.format, "format", "8N2", "character format: 8N2, 8E1, 8O1 or 8N1")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the random car traffic")
	fs.StringVar(&o.dir, "dir", filepath.Join(os.TempDir(), "devsim"), "folder for the stable port links ttyBUS0, ttyBUS1, ...")
	fs.Float64Var(&o.rate, "rate", 1.5, "arrivals per free bay per simulated hour")
	fs.DurationVar(&o.stay, "stay", 40*time.Minute, "mean stay of a car, simulated time")
	fs.Float64Var(&o.speed, "speed", 60, "simulated seconds per wall-clock second")
	fs.StringVar(&o.mix, "mix", "ultrasonic=0.5", "sensor mix: ultrasonic=SHARE or geomagnetic=SHARE, SHARE in 0..1")
	fs.StringVar(&o.lot, "lot", "demo-lot", "lot tag of the devices in the config")
	fs.DurationVar(&o.poll, "poll", time.Second, "poll interval of the devices in the config")
	fs.DurationVar(&o.timeout, "timeout", 200*time.Millisecond, "reply timeout of the buses in the config")
	fs.StringVar(&o.writeConfig, "write-config", "", "write a whole gateway config to this file")
	fs.StringVar(&o.site, "site", "demo", "site of the written config")
	fs.StringVar(&o.gateway, "gateway", "gw-01", "gateway of the written config")
	fs.StringVar(&o.broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL of the written config")
	fs.StringVar(&o.outbox, "outbox", "/var/lib/luling/outbox", "outbox path of the written config")
	fs.StringVar(&o.statusListen, "status-listen", "127.0.0.1:9100", "local status listen address of the written config")
	fs.IntVar(&o.inverters, "inverters", 0, "SunSpec inverters on a bus of their own (DIR/ttyPV), following the day curve of the wall clock")
	fs.StringVar(&o.signPlugin, "sign-plugin", "", "guidance-display plugin binary: puts a guidance sign per zone on a bus of their own (DIR/ttySIGN); with --guidance-plugin")
	fs.StringVar(&o.guidancePlugin, "guidance-plugin", "", "zone-guidance rule plugin binary, which writes each zone's free bays to its sign; with --sign-plugin")
	fs.IntVar(&o.doors, "doors", 0, "access-controlled doors: an OSDP reader each on a bus of their own (DIR/ttyDOOR), strike, contact and exit button on simulated GPIO (1..8)")
	fs.StringVar(&o.gpioSocket, "gpio-socket", "", "unix socket of the doors' simulated GPIO lines, gpio.simulator in the config (default DIR/gpio.sock)")
	fs.DurationVar(&o.accessEvery, "access-every", 10*time.Second, "mean wall-clock time between two visitors at the doors")
	fs.BoolVar(&o.lanes, "lanes", false, "an entry and an exit lane of --lot on simulated GPIO (barrier, loops, a Wiegand tag reader at the entry) with a stream of vehicles; the lanes count the lot (docs/parking.md)")
	fs.DurationVar(&o.laneEvery, "lane-every", 2*time.Second, "mean wall-clock gap before each vehicle at a lane; vehicles come while the lanes' count is behind the bay sensors")
	fs.Float64Var(&o.laneJam, "lane-jam", 0.02, "share of exit vehicles for which the barrier jams (a fault), 0..1")
	fs.IntVar(&o.laneCapacity, "lane-capacity", 40, "capacity of --lot counted at the lanes")
	fs.BoolVar(&o.verbose, "v", false, "log each bus's diagnostics too")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
	}
	switch {
	case o.bays < 1:
		return nil, bad("--bays %d: want at least 1", o.bays)
	case o.buses < 1 || o.buses > o.bays:
		return nil, bad("--buses %d: want 1..%d (no more buses than bays)", o.buses, o.bays)
	case (o.bays+o.buses-1)/o.buses > 247:
		return nil, bad("--bays %d on --buses %d: at most 247 bays per bus, use more buses", o.bays, o.buses)
	case !bauds[o.baud]:
		return nil, bad("--baud %d: want one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200", o.baud)
	case o.rate <= 0 || o.rate > 3600:
		return nil, bad("--rate %v: want arrivals per hour in (0, 3600]", o.rate)
	case o.stay < time.Second:
		return nil, bad("--stay %v: want at least 1s", o.stay)
	case !(o.speed > 0 && o.speed <= 1e6):
		return nil, bad("--speed %v: want a factor in (0, 1000000]", o.speed)
	case o.poll <= 0:
		return nil, bad("--poll %v: want a positive duration", o.poll)
	case o.timeout <= 0:
		return nil, bad("--timeout %v: want a positive duration", o.timeout)
	case !nameRE.MatchString(o.site):
		return nil, bad("--site %q: want 1 to 64 of a-z, 0-9 and -", o.site)
	case !nameRE.MatchString(o.gateway):
		return nil, bad("--gateway %q: want 1 to 64 of a-z, 0-9 and -", o.gateway)
	case o.lot == "":
		return nil, bad("--lot: want a name")
	case o.dir == "":
		return nil, bad("--dir: want a folder")
	case o.inverters < 0 || o.inverters > 247:
		return nil, bad("--inverters %d: want 0..247", o.inverters)
	case o.doors < 0 || o.doors > 8:
		return nil, bad("--doors %d: want 0..8", o.doors)
	case o.accessEvery < 100*time.Millisecond:
		return nil, bad("--access-every %v: want at least 100ms", o.accessEvery)
	case o.laneEvery < 100*time.Millisecond:
		return nil, bad("--lane-every %v: want at least 100ms", o.laneEvery)
	case !(o.laneJam >= 0 && o.laneJam <= 1):
		return nil, bad("--lane-jam %v: want a share in 0..1", o.laneJam)
	case o.laneCapacity < 1 || o.laneCapacity > 100000:
		return nil, bad("--lane-capacity %d: want 1..100000", o.laneCapacity)
	}
	if _, ok := formats[strings.ToUpper(o.format)]; !ok {
		return nil, bad("--format %q: want 8N2, 8E1, 8O1 or 8N1", o.format)
	}
	o.format = strings.ToUpper(o.format)
	share, err := parseMix(o.mix)
	if err != nil {
		return nil, bad("--mix %q: %v", o.mix, err)
	}
	o.ultrasonic = share
	return o, nil
}

// parseMix reads "ultrasonic=0.3" or "geomagnetic=0.7" into the share of
// ultrasonic sensors.
func parseMix(s string) (float64, error) {
	model, val, ok := strings.Cut(s, "=")
	if !ok {
		return 0, fmt.Errorf("want ultrasonic=SHARE or geomagnetic=SHARE")
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
	if err != nil || !(v >= 0 && v <= 1) {
		return 0, fmt.Errorf("share %q: want a number in 0..1", val)
	}
	switch strings.TrimSpace(model) {
	case "ultrasonic":
		return v, nil
	case "geomagnetic":
		return 1 - v, nil
	}
	return 0, fmt.Errorf("model %q: want ultrasonic or geomagnetic", model)
}

func runParking(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseParking(args, stderr)
	if err == flag.ErrHelp {
		return nil
	}
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	f := formats[o.format]
	lot, err := modbussim.NewLot(modbussim.LotConfig{
		Bays:       o.bays,
		Buses:      o.buses,
		Line:       modbussim.Line{Baud: o.baud, CharBits: f.charBits},
		Seed:       o.seed,
		Ultrasonic: o.ultrasonic,
		MeanFree:   time.Duration(float64(time.Hour) / o.rate),
		MeanStay:   o.stay,
		Speed:      o.speed,
		Dir:        o.dir,
		Logger:     logger,
	})
	if err != nil {
		return fmt.Errorf("parking: %w", err)
	}
	defer lot.Close()
	solar, err := startSolar(o, o.inverters, logger)
	if err != nil {
		return err
	}
	defer solar.close()
	o.solar = solar

	buses, bays := lot.Buses(), lot.Bays()
	signs, err := startSigns(o, buses, logger)
	if err != nil {
		return err
	}
	defer signs.close()
	o.signs = signs
	o.laneSim = newLaneBench(o, logger)
	if o.laneSim != nil {
		o.laneSim.cars = func() int {
			n := 0
			for _, b := range bays {
				if occ, err := lot.Occupied(b.Bay); err == nil && occ {
					n++
				}
			}
			return n
		}
	}
	doorSim, err := startAccess(o, o.doors, logger)
	if err != nil {
		return err
	}
	defer doorSim.close()
	o.doorSim = doorSim
	if err := o.laneSim.start(o, logger); err != nil {
		return err
	}
	defer o.laneSim.close()
	fmt.Fprintf(stdout, "devsim parking: %d bays on %d buses, %d baud %s, seed %d, speed %gx\n",
		o.bays, o.buses, o.baud, o.format, o.seed, o.speed)
	for _, b := range buses {
		fmt.Fprintf(stdout, "  %s  port %s  units 1..%d  bays %d..%d\n",
			b.Name, b.Path, b.LastBay-b.FirstBay+1, b.FirstBay, b.LastBay)
	}
	fmt.Fprintf(stdout, "\n# gateway config: buses and devices\n%s", configSections(o, buses, bays))
	if o.writeConfig != "" {
		if err := writeConfig(o, buses, bays); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nwrote gateway config %s\n", o.writeConfig)
	}
	if o.laneSim != nil {
		fmt.Fprintf(stdout, "\nlanes gate-in and gate-out count lot %s on simulated GPIO at %s\n", o.lot, o.laneSim.socket)
		lctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); o.laneSim.run(lctx) }()
		defer func() { stop(); <-done }()
	}
	if doorSim != nil || o.laneSim != nil {
		cmd, err := doorSim.syncCommand()
		if err != nil {
			return err
		}
		path := filepath.Join(o.dir, "credentials-sync.json")
		if err := os.WriteFile(path, cmd, 0o644); err != nil {
			return fmt.Errorf("access: %w", err)
		}
		fmt.Fprintf(stdout, "\nthe credentials.sync command that grants the simulated cards: %s\n", path)
	}
	if doorSim != nil {
		fmt.Fprintf(stdout, "%d doors on simulated GPIO at %s\n", o.doors, doorSim.socket)
		actx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); doorSim.run(actx) }()
		defer func() { stop(); <-done }()
	}
	err = lot.Run(ctx)
	logger.Info("stopping", "changes", len(lot.Changes()))
	return err
}

// zone names the bus's zone tag: a, b, ..., z, then bus numbers.
func zone(bus int) string {
	if bus < 26 {
		return string(rune('a' + bus))
	}
	return strconv.Itoa(bus + 1)
}

// configSections renders the buses and devices sections of a gateway config.
func configSections(o *parkingOptions, buses []modbussim.BusInfo, bays []modbussim.BayInfo) string {
	f := formats[o.format]
	var b strings.Builder
	b.WriteString("buses:\n")
	for _, bus := range buses {
		fmt.Fprintf(&b, "  - name: %s\n    port: %s\n    baud: %d\n    data_bits: 8\n    parity: %s\n    stop_bits: %d\n    timeout: %s\n",
			bus.Name, strconv.Quote(bus.Path), o.baud, f.parity, f.stopBits, o.timeout)
	}
	pvBus, pvDevices := o.solar.config(o)
	signBus, signDevices, rules := o.signs.config(o)
	doorBus, doorDevices, doors := o.doorSim.config(o)
	b.WriteString(pvBus)
	b.WriteString(signBus)
	b.WriteString(doorBus)
	b.WriteString(doors)
	b.WriteString(o.laneSim.config(o))
	b.WriteString(rules)
	b.WriteString("devices:\n")
	b.WriteString(pvDevices)
	b.WriteString(signDevices)
	b.WriteString(doorDevices)
	for _, bay := range bays {
		fmt.Fprintf(&b, "  - id: bay-%03d\n    driver: modbus\n    bus: %s\n    unit: %d\n    profile: %s\n    poll: %s\n    tags: {lot: %s, zone: %s, bay: \"%03d\"}\n",
			bay.Bay, buses[bay.Bus].Name, bay.Unit, bay.Model.Profile(), o.poll, strconv.Quote(o.lot), zone(bay.Bus), bay.Bay)
	}
	return b.String()
}

// writeConfig writes a whole gateway config, atomically.
func writeConfig(o *parkingOptions, buses []modbussim.BusInfo, bays []modbussim.BayInfo) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by devsim parking (seed %d): %d bays on %d simulated buses.\n", o.seed, o.bays, o.buses)
	fmt.Fprintf(&b, "site: %s\ngateway: %s\nuplink:\n  brokers: [%s]\noutbox:\n  path: %s\nstatus:\n  listen: %s\n",
		o.site, o.gateway, strconv.Quote(o.broker), strconv.Quote(o.outbox), strconv.Quote(o.statusListen))
	b.WriteString(configSections(o, buses, bays))
	if err := safefile.Replace(o.writeConfig, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write config %s: %w", o.writeConfig, err)
	}
	return nil
}
