package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/luling-edge/luling/internal/citysim"
)

// cityOptions are devsim city's flags.
type cityOptions struct {
	cfg      citysim.Config
	brokers  string
	duration time.Duration
	drain    time.Duration
	every    time.Duration
	json     bool
}

func parseCity(args []string, stderr io.Writer) (*cityOptions, error) {
	o := &cityOptions{}
	c := &o.cfg
	fs := flag.NewFlagSet("devsim city", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.Gateways, "gateways", 10, "simulated gateways, one MQTT connection each")
	fs.IntVar(&c.Devices, "devices", 300, "parking bays per gateway")
	fs.StringVar(&o.brokers, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL; several, comma-separated, spread the gateways round-robin")
	fs.StringVar(&c.Site, "site", citysim.DefaultSite, "site of every gateway (gateways are gw-00001, gw-00002, …)")
	fs.DurationVar(&c.BayChange, "bay-change", citysim.DefaultBayChange, "mean time between two changes of one bay (the demo's: 40 min stay and 40 min free at --speed 60)")
	fs.Float64Var(&c.EventShare, "event-share", citysim.DefaultEventShare, "share of records that are access events and inverter readings (0 to 0.9)")
	fs.DurationVar(&c.BatchEvery, "batch-every", citysim.DefaultBatchEvery, "how often each gateway seals a batch")
	fs.DurationVar(&c.ConfirmWait, "confirm-wait", citysim.DefaultConfirmWait, "publish the unconfirmed tail again when acknowledgements stall this long")
	fs.DurationVar(&c.KeepAlive, "keepalive", citysim.DefaultKeepAlive, "MQTT keep-alive of each connection")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the random traffic")
	fs.DurationVar(&o.duration, "duration", 0, "stop new traffic after this long (0: run until SIGINT or SIGTERM)")
	fs.DurationVar(&o.drain, "drain", 30*time.Second, "after --duration, wait at most this long for cloudd to confirm everything")
	fs.DurationVar(&o.every, "report-every", 10*time.Second, "log the totals this often (0: never)")
	fs.BoolVar(&o.json, "json", false, "print the final report as JSON (with each gateway's last sequence number)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	for _, b := range strings.Split(o.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.Brokers = append(c.Brokers, b)
		}
	}
	if c.EventShare == 0 {
		c.EventShare = -1 // the flag's 0 means none; citysim's 0 means its default
	}
	var errs []error
	if o.duration < 0 || o.drain < 0 || o.every < 0 {
		errs = append(errs, fmt.Errorf("--duration %v, --drain %v, --report-every %v: want durations of 0 or more", o.duration, o.drain, o.every))
	}
	if _, err := citysim.New(*c); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return o, nil
}

// runCity runs devsim city until ctx ends or --duration (and the drain)
// passed, then prints what it sent.
func runCity(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseCity(args, stderr)
	if err == flag.ErrHelp {
		return nil
	} else if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	o.cfg.Logger = log
	o.cfg.Version = version
	city, err := citysim.New(o.cfg)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- city.Run(runCtx) }()
	log.Info("devsim city: starting", "gateways", o.cfg.Gateways, "devices", o.cfg.Devices, "brokers", o.cfg.Brokers)

	var stopAt, drainUntil <-chan time.Time
	if o.duration > 0 {
		stopAt = time.After(o.duration)
	}
	var report <-chan time.Time
	if o.every > 0 {
		t := time.NewTicker(o.every)
		defer t.Stop()
		report = t.C
	}
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	draining := false
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-stopAt:
			city.StopTraffic()
			draining, drainUntil = true, time.After(o.drain)
			log.Info("devsim city: traffic stopped; waiting for cloudd to confirm", "unconfirmed", city.Totals().Unconfirmed)
		case <-drainUntil:
			log.Warn("devsim city: drain time over; messages still unconfirmed", "unconfirmed", city.Totals().Unconfirmed)
			break loop
		case <-poll.C:
			if draining && city.Totals().Unconfirmed == 0 {
				break loop
			}
		case <-report:
			t := city.Totals()
			log.Info("devsim city", "online", t.Online, "messages", t.Messages, "records", t.Records, "unconfirmed", t.Unconfirmed, "resent", t.Resent, "late_ticks", t.LateTicks)
		}
	}
	cancel()
	if err := <-done; err != nil {
		return err
	}
	return printCityReport(stdout, city.Report(), o.json)
}

func printCityReport(w io.Writer, r citysim.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	var ms []string
	for m, n := range r.ByMeasurement {
		ms = append(ms, fmt.Sprintf("%s=%d", m, n))
	}
	sort.Strings(ms)
	_, err := fmt.Fprintf(w, "gateways %d × %d devices for %.1fs: %d messages, %d records (%s), %d published, %d resent, %d acks, %d unconfirmed, %d late ticks\n",
		r.Gateways, r.Devices, r.Seconds, r.Messages, r.Records, strings.Join(ms, " "), r.Published, r.Resent, r.Acks, r.Unconfirmed, r.LateTicks)
	return err
}
