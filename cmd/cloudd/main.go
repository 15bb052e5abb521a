// Command cloudd is the cloud aggregator: it subscribes to every gateway's
// telemetry, events and status over MQTT, validates each payload, tracks
// per-gateway sequence numbers, writes InfluxDB (parking_lot occupancy
// included) and serves fleet state over HTTP. Without -broker-url it embeds
// an MQTT broker. See docs/cloudd.md.
//
//	cloudd [flags]            run
//	cloudd hash-password      read a password on stdin, print its bcrypt hash
//	cloudd token create|list|revoke   manage the HTTP API's tokens
//	cloudd user add|passwd|list|remove   manage the web platform's accounts
//	cloudd gateway add|list|enable|disable|remove|passwd|provision|revoke
//	                          manage the gateway registry (embedded broker)
//	cloudd ca server-cert     issue the embedded broker's certificate from the site CA
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// SIGHUP must not stop cloudd (systemctl reload, a habit from other
	// daemons): the embedded broker's registry reloads on it, everything
	// else cloudd follows without a signal.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err == nil {
		return
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.msg != "" {
			fmt.Fprintln(os.Stderr, "cloudd:", ue.msg)
		}
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "cloudd:", err)
	os.Exit(1)
}

// version is set at build time (-X main.version=…, see the Makefile).
var version = "dev"

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }
