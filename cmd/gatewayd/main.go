// Command gatewayd is the Luling edge daemon: it reads the field devices
// named in its config file, keeps every reading in a durable outbox and
// forwards it over MQTT.
//
//	gatewayd -config /etc/luling/gateway.yaml
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/gateway"
)

var version = "dev"

// defaultMemoryLimit is the Go runtime's soft memory limit when GOMEMLIMIT
// is not set: the collector works harder as the heap nears it, so the daemon
// stays small next to other services on a 512 MB board.
const defaultMemoryLimit = 32 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintln(os.Stderr, "gatewayd:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "gatewayd:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gatewayd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/luling/gateway.yaml", "gateway config file (YAML)")
	check := fs.Bool("check", false, "validate the config and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments %q (the config file goes after -config)", fs.Args())}
	}
	if *showVersion {
		fmt.Fprintln(stdout, "gatewayd", version)
		return nil
	}
	if *check {
		cfg, err := load(*cfgPath)
		if err != nil {
			return err
		}
		if needsFull(cfg) {
			return handOver(*cfgPath, cfg, args)
		}
		if err := validateLoaded(*cfgPath, cfg); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok: %s\n", *cfgPath, cfg.Summary())
		return nil
	}
	// gateway.New compiles the rules itself: no separate check at start-up.
	cfg, err := load(*cfgPath)
	if err != nil {
		return err
	}
	if needsFull(cfg) {
		return handOver(*cfgPath, cfg, args)
	}
	sup := &supervisor{path: *cfgPath, args: args, stderr: stderr, reload: make(chan struct{}, 1)}
	sup.started = startSystemd(ctx, stderr).track // sdnotify.go
	return sup.run(ctx, cfg)
}

// load reads and checks a config file against this build's drivers and
// profiles.
func load(path string) (*config.Config, error) {
	opts, err := all.ConfigOptions()
	if err != nil {
		return nil, err
	}
	return config.Load(path, opts...)
}

// validate is load plus compiling the rules: what a config must pass before
// a running gateway is replaced by one built from it.
func validate(path string) (*config.Config, error) {
	cfg, err := load(path)
	if err != nil {
		return nil, err
	}
	if needsFull(cfg) { // this build cannot compile plugin rules
		if err := checkWithFull(path, cfg); err != nil {
			return nil, err
		}
		return cfg, nil
	}
	return cfg, validateLoaded(path, cfg)
}

// validateLoaded compiles the rules of a loaded config and refuses the
// example's placeholders.
func validateLoaded(path string, cfg *config.Config) error {
	if err := gateway.CheckRules(cfg); err != nil {
		return err
	}
	return placeholders(path, cfg) // placeholders.go
}

// supervisor runs the gateway and restarts it in-process with a new config
// when config.reload (or SIGHUP) asks and the new config is valid.
type supervisor struct {
	path   string
	args   []string // gatewayd's arguments, for a hand-over to gatewayd-full
	stderr io.Writer
	reload chan struct{}
	// processStart is when gatewayd started: every gateway it runs counts
	// its uptime from it.
	processStart time.Time
	// started is told each running gateway (for tests).
	started func(*gateway.Gateway)
}

// requestReload validates the config on disk; only a valid one schedules
// the restart. A bad config is refused with its errors and the running
// gateway goes on.
func (s *supervisor) requestReload(ctx context.Context) error {
	if _, err := validate(s.path); err != nil {
		return err
	}
	select {
	case s.reload <- struct{}{}:
	default:
	}
	return nil
}

func (s *supervisor) run(ctx context.Context, cfg *config.Config) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if s.processStart.IsZero() {
		s.processStart = time.Now()
	}
	for {
		if needsFull(cfg) { // a reload brought plugins in
			newLogger(s.stderr, cfg).Info("config uses plugins: handing over to "+fullName, "config", s.path, "uses", usesPlugins(cfg))
			return handOver(s.path, cfg, s.args)
		}
		log := newLogger(s.stderr, cfg)
		gw, err := gateway.New(cfg, gateway.Options{Version: version, Logger: log, Reload: s.requestReload, Started: s.processStart})
		if err != nil {
			return err
		}
		if s.started != nil {
			s.started(gw)
		}
		runCtx, cancel := context.WithCancel(ctx)
		// reloading carries the next config, or nil when Run ends otherwise.
		reloading := make(chan *config.Config, 1)
		go func() {
			for {
				select {
				case <-runCtx.Done():
					reloading <- nil
					return
				case <-hup:
					if err := s.requestReload(runCtx); err != nil {
						log.Error("SIGHUP: config refused, keeping the running one", "config", s.path, "err", err)
					}
				case <-s.reload:
					// Let the command's reply go out before the uplink stops.
					select {
					case <-time.After(time.Second):
					case <-runCtx.Done():
					}
					next, err := validate(s.path)
					if err != nil {
						// Changed again after it was validated: keep running.
						log.Error("config changed after validation; keeping the running one", "config", s.path, "err", err)
						continue
					}
					log.Info("reloading config", "config", s.path)
					// Same uplink settings: the status topic goes from this
					// birth to the next without an offline in between.
					gw.PrepareReload(next)
					reloading <- next
					cancel()
					return
				}
			}
		}()
		err = gw.Run(runCtx)
		cancel()
		next := <-reloading
		if err != nil || next == nil || ctx.Err() != nil {
			return err
		}
		cfg = next
	}
}

func newLogger(w io.Writer, cfg *config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Log.SlogLevel()}
	var h slog.Handler
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With("site", cfg.Site, "gateway", cfg.Gateway)
}
