package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/drivers/gpio/simgpio"
	"github.com/luling-edge/luling/firmware-config/config"
)

const gpioUsage = `usage: devsim gpio -config FILE [-gpio-socket PATH]

Serves every GPIO line of a gateway config (doors, Wiegand readers, gpio
devices) as simulated lines at the config's gpio.simulator socket, for
rehearsing that config's doors on a laptop. It logs what the gateway writes
(strikes, relays) and takes commands on standard input, one per line:

  LINE high | LINE low     set an input line (e.g. gpiochip0:22 low)
  LINE pulse DURATION      flip the line for DURATION, then back (a button: gpiochip0:27 pulse 300ms)
  levels                   print every line's level
`

// runGPIO is devsim gpio.
func runGPIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devsim gpio", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, gpioUsage) }
	cfgPath := fs.String("config", "", "the gateway config whose GPIO lines to serve")
	socket := fs.String("gpio-socket", "", "the unix socket (default: the config's gpio.simulator)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("%w: want -config FILE and no arguments", errUsage)
	}
	opts, err := all.ConfigOptions()
	if err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath, append(opts, config.SkipFileChecks())...)
	if err != nil {
		return err
	}
	if *socket == "" {
		*socket = cfg.GPIO.Simulator
	}
	if *socket == "" {
		return fmt.Errorf("%w: %s has no gpio.simulator: give -gpio-socket PATH (and set gpio.simulator to it)", errUsage, *cfgPath)
	}
	if len(cfg.GPIOLines) == 0 {
		return fmt.Errorf("%s uses no GPIO lines: nothing to serve", *cfgPath)
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	srv, err := simgpio.NewServer(cfg.GPIOLines, simgpio.ServerOptions{Logger: logger,
		OnOut: func(line string, l gpio.Level, t time.Time) {
			logger.Info("the gateway set a line", "line", line, "level", simgpio.LevelOf(l))
		}})
	if err != nil {
		return err
	}
	ln, err := simgpio.Listen(*socket)
	if err != nil {
		return err
	}
	defer os.Remove(*socket)
	fmt.Fprintf(stdout, "devsim gpio: serving %s at %s\n", strings.Join(cfg.GPIOLines, ", "), *socket)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			if msg := gpioCommand(ctx, srv, cfg.GPIOLines, sc.Text()); msg != "" {
				fmt.Fprintln(stdout, msg)
			}
		}
	}()
	return srv.Serve(ctx, ln)
}

// gpioCommand runs one command line and returns what to print.
func gpioCommand(ctx context.Context, srv *simgpio.Server, lines []string, cmd string) string {
	f := strings.Fields(cmd)
	switch {
	case len(f) == 0:
		return ""
	case len(f) == 1 && f[0] == "levels":
		var b strings.Builder
		for _, n := range lines {
			l, _ := srv.Level(n)
			fmt.Fprintf(&b, "%s %s\n", n, simgpio.LevelOf(l))
		}
		return strings.TrimSuffix(b.String(), "\n")
	case len(f) == 2 && (f[1] == "high" || f[1] == "low"):
		if err := srv.Drive(f[0], simgpio.Level(f[1]).GPIO()); err != nil {
			return err.Error()
		}
		return ""
	case len(f) == 3 && f[1] == "pulse":
		d, err := time.ParseDuration(f[2])
		if err != nil || d <= 0 || d > time.Minute {
			return fmt.Sprintf("pulse %q: want a duration such as 300ms (at most 1m)", f[2])
		}
		l, err := srv.Level(f[0])
		if err != nil {
			return err.Error()
		}
		srv.Drive(f[0], !l)
		sleepCtx(ctx, d)
		srv.Drive(f[0], l)
		return ""
	}
	return fmt.Sprintf("%q: want LINE high, LINE low, LINE pulse DURATION or levels", cmd)
}
