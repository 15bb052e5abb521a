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
	"syscall"

	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/firmware-config/config"
	"github.com/luling-edge/luling/gateway"
)

var version = "dev"

func main() {
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
	opts, err := all.ConfigOptions()
	if err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath, opts...)
	if err != nil {
		return err
	}
	if err := gateway.CheckRules(cfg); err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stdout, "%s: ok: %s\n", *cfgPath, cfg.Summary())
		return nil
	}
	log := newLogger(stderr, cfg)
	gw, err := gateway.New(cfg, gateway.Options{Version: version, Logger: log})
	if err != nil {
		return err
	}
	return gw.Run(ctx)
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
