package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/luling-edge/luling/cloud/auth"
	cloudcmd "github.com/luling-edge/luling/cloud/command"
	"github.com/luling-edge/luling/cloud/fleet"
	"github.com/luling-edge/luling/cloud/influxw"
	"github.com/luling-edge/luling/cloud/ingest"
)

// config is cloudd's configuration: flags with LULING_CLOUD_* environment
// fallbacks.
type config struct {
	brokerURL     string
	embedded      embeddedConfig // without -broker-url: brokerflags.go
	engine        engineConfig   // -engine, -nats-*: natsflags.go
	clientID      string
	username      string
	password      string
	tlsCA         string
	tlsCert       string
	tlsKey        string
	group         string
	influxURL     string
	influxToken   string
	influxOrg     string
	influxBucket  string
	httpAddr      string
	tokens        string
	users         string
	secureCookies bool
	logLevel      string
	logFormat     string
	showVersion   bool
	batchPoints   int
	influxWrites  int
	seqGrace      time.Duration
	queueTime     time.Duration
	trust         *ingestTrust
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("cloudd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v, ok := os.LookupEnv("LULING_CLOUD_" + name); ok {
			return v
		}
		return def
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "local"
	}
	fs.StringVar(&c.brokerURL, "broker-url", env("BROKER_URL", ""), "MQTT broker URL (tcp://, ssl://, ws://); empty runs the embedded broker [LULING_CLOUD_BROKER_URL]")
	c.embedded.register(fs, env)
	c.engine.register(fs, env)
	fs.StringVar(&c.clientID, "client-id", env("CLIENT_ID", "cloudd-"+host), "MQTT client id; keep it stable, the broker holds the session under it [LULING_CLOUD_CLIENT_ID]")
	fs.StringVar(&c.username, "username", env("USERNAME", ""), "MQTT username [LULING_CLOUD_USERNAME]")
	fs.StringVar(&c.password, "password", env("PASSWORD", ""), "MQTT password [LULING_CLOUD_PASSWORD]")
	fs.StringVar(&c.tlsCA, "tls-ca", env("TLS_CA", ""), "PEM file of CAs that sign the broker's certificate [LULING_CLOUD_TLS_CA]")
	fs.StringVar(&c.tlsCert, "tls-cert", env("TLS_CERT", ""), "PEM client certificate for the broker [LULING_CLOUD_TLS_CERT]")
	fs.StringVar(&c.tlsKey, "tls-key", env("TLS_KEY", ""), "PEM client key for the broker [LULING_CLOUD_TLS_KEY]")
	fs.StringVar(&c.group, "group", env("GROUP", ""), "shared-subscription group for running several instances; empty (the default) subscribes without $share/ [LULING_CLOUD_GROUP]")
	fs.StringVar(&c.influxURL, "influx-url", env("INFLUX_URL", "http://127.0.0.1:8086"), "InfluxDB URL [LULING_CLOUD_INFLUX_URL]")
	fs.StringVar(&c.influxToken, "influx-token", env("INFLUX_TOKEN", ""), `InfluxDB token; for 1.8 "user:password" or empty [LULING_CLOUD_INFLUX_TOKEN]`)
	fs.StringVar(&c.influxOrg, "influx-org", env("INFLUX_ORG", ""), "InfluxDB organization (ignored by 1.8) [LULING_CLOUD_INFLUX_ORG]")
	fs.StringVar(&c.influxBucket, "influx-bucket", env("INFLUX_BUCKET", "community"), "InfluxDB bucket (1.8: database) [LULING_CLOUD_INFLUX_BUCKET]")
	fs.StringVar(&c.httpAddr, "http", env("HTTP", "127.0.0.1:8080"), "listen address of the HTTP API; empty disables it [LULING_CLOUD_HTTP]")
	tokensFlag(fs, &c.tokens)
	usersFlag(fs, &c.users)
	fs.BoolVar(&c.secureCookies, "secure-cookies", env("SECURE_COOKIES", "") == "true", "mark the web platform's session cookie Secure (when users reach cloudd over HTTPS, e.g. behind a proxy) [LULING_CLOUD_SECURE_COOKIES]")
	fs.StringVar(&c.logLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error [LULING_CLOUD_LOG_LEVEL]")
	fs.StringVar(&c.logFormat, "log-format", env("LOG_FORMAT", "text"), "text or json (one JSON object a line) [LULING_CLOUD_LOG_FORMAT]")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit (also --version)")
	batch := env("BATCH_POINTS", "5000")
	grace := env("SEQ_GRACE", "60s")
	queueTime := env("QUEUE_TIME", ingest.DefaultQueueTime.String())
	fs.Func("batch-points", "points per InfluxDB write at most (default 5000) [LULING_CLOUD_BATCH_POINTS]", func(s string) error { batch = s; return nil })
	writes := env("INFLUX_WRITES", strconv.Itoa(ingest.DefaultWrites))
	fs.Func("influx-writes", fmt.Sprintf("InfluxDB writes in flight at once, 1 to %d (default %d) [LULING_CLOUD_INFLUX_WRITES]", ingest.MaxWrites, ingest.DefaultWrites), func(s string) error { writes = s; return nil })
	fs.Func("seq-grace", "how long a sequence gap may stay open before its messages count as lost (default 60s) [LULING_CLOUD_SEQ_GRACE]", func(s string) error { grace = s; return nil })
	fs.Func("queue-time", fmt.Sprintf("work taken in ahead of the InfluxDB writer, in time at its measured rate (at least 128 messages and what fills every write in flight); at most a quarter of -seq-grace (default %v) [LULING_CLOUD_QUEUE_TIME]", ingest.DefaultQueueTime), func(s string) error { queueTime = s; return nil })
	trust, checkTrust := ingestTrustFlags(fs, env)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, &usageError{}
		}
		return nil, &usageError{msg: err.Error()}
	}
	if c.showVersion {
		return c, nil
	}
	if fs.NArg() > 0 {
		return nil, &usageError{msg: fmt.Sprintf("unexpected argument %q (subcommands: hash-password, token, user, gateway, ca)", fs.Arg(0))}
	}
	n, err := strconv.Atoi(batch)
	if err != nil || n < 1 || n > 1_000_000 {
		return nil, &usageError{msg: fmt.Sprintf("-batch-points %q: want an integer from 1 to 1000000", batch)}
	}
	c.batchPoints = n
	if n, err = strconv.Atoi(writes); err != nil || n < 1 || n > ingest.MaxWrites {
		return nil, &usageError{msg: fmt.Sprintf("-influx-writes %q: want an integer from 1 to %d (InfluxDB writes in flight at once)", writes, ingest.MaxWrites)}
	}
	c.influxWrites = n
	if c.seqGrace, err = time.ParseDuration(grace); err != nil || c.seqGrace <= 0 {
		return nil, &usageError{msg: fmt.Sprintf("-seq-grace %q: want a positive duration such as 60s", grace)}
	}
	if c.queueTime, err = time.ParseDuration(queueTime); err != nil || c.queueTime <= 0 {
		return nil, &usageError{msg: fmt.Sprintf("-queue-time %q: want a positive duration such as 5s", queueTime)}
	}
	if c.queueTime > c.seqGrace/4 {
		return nil, &usageError{msg: fmt.Sprintf("-queue-time %v must be at most a quarter of -seq-grace %v: a message that comes again after its gap opened waits this long in the queue, and must fill the gap before it counts as lost", c.queueTime, c.seqGrace)}
	}
	if err := checkTrust(); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	c.trust = trust
	if _, err := parseLevel(c.logLevel); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return nil, &usageError{msg: fmt.Sprintf("-log-format %q: want text or json", c.logFormat)}
	}
	if err := c.engine.check(c); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	if c.brokerURL != "" {
		if !strings.Contains(c.brokerURL, "://") {
			return nil, &usageError{msg: fmt.Sprintf("-broker-url %q: want scheme://host:port (tcp, ssl, ws, wss)", c.brokerURL)}
		}
	} else if c.engine.engine == "mqtt" {
		if err := c.embedded.check(); err != nil {
			return nil, &usageError{msg: err.Error()}
		}
	}
	if c.clientID == "" {
		return nil, &usageError{msg: "-client-id is empty: the broker keeps cloudd's session under a stable client id"}
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, &usageError{msg: "-tls-cert and -tls-key go together"}
	}
	if !strings.HasPrefix(c.influxURL, "http://") && !strings.HasPrefix(c.influxURL, "https://") {
		return nil, &usageError{msg: fmt.Sprintf("-influx-url %q: want http:// or https://", c.influxURL)}
	}
	if c.influxBucket == "" {
		return nil, &usageError{msg: "-influx-bucket is empty"}
	}
	if c.group != "" && strings.ContainsAny(c.group, "/+#") {
		return nil, &usageError{msg: fmt.Sprintf("-group %q: must not contain / + or #", c.group)}
	}
	return c, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("-log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// logger is cloudd's logger at -log-level in -log-format, writing to w.
func (c *config) logger(w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.logLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func (c *config) tlsConfig() (*tls.Config, error) {
	if c.tlsCA == "" && c.tlsCert == "" {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("tls ca: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca %s: no PEM certificate found", c.tlsCA)
		}
	}
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate %s / key %s: %w", c.tlsCert, c.tlsKey, err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// run is cloudd without the process around it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "hash-password" {
		return hashPassword(args[1:], stdin, stdout)
	}
	if len(args) > 0 && args[0] == "token" {
		return tokenCmd(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "user" {
		return userCmd(args[1:], stdin, stdout, stderr)
	}
	if len(args) > 0 && (args[0] == "gateway" || args[0] == "ca") {
		return identityCmd(args[0], args[1:], stdin, stdout, stderr)
	}
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.showVersion {
		fmt.Fprintln(stdout, "cloudd", version)
		return nil
	}
	log := c.logger(stderr)

	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return err
	}
	icfg := ingest.Config{
		BrokerURL: c.brokerURL, ClientID: c.clientID, Username: c.username, Password: c.password,
		TLS: tlsCfg, Group: c.group, BatchPoints: c.batchPoints, Writes: c.influxWrites, Grace: c.seqGrace, QueueTime: c.queueTime,
		AllowMeasurements: c.trust.measurements, Logger: log.With("component", "ingest"),
	}
	if c.brokerURL == "" && c.engine.engine == "mqtt" {
		b, err := c.embedded.start(ctx, log)
		if err != nil {
			return err
		}
		defer b.Close()
		icfg.BrokerURL = b.URL()
		icfg.Username, icfg.Password = b.InternalCredential()
		icfg.TLS = nil
	}

	w, err := influxw.New(influxw.Config{URL: c.influxURL, Token: c.influxToken, Org: c.influxOrg, Bucket: c.influxBucket})
	if err != nil {
		return err
	}
	defer w.Close()
	f := fleet.New(c.seqGrace, nil)
	f.SetMaxJump(c.trust.seqMaxJump)
	bus, err := c.engine.bus(c, f, log)
	if err != nil {
		return err
	}
	metrics := func(io.Writer) {}
	if bus != nil {
		icfg.Source = bus
		metrics = bus.WriteMetrics
	}
	in, err := ingest.New(icfg, w, f)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)

	if c.httpAddr != "" {
		ln, err := net.Listen("tcp", c.httpAddr)
		if err != nil {
			return fmt.Errorf("http api: listen on %s: %w", c.httpAddr, err)
		}
		// Commands to gateways: POST /api/v1/gateways/{site}/{gateway}/commands,
		// replies collected on gw/v1/+/+/cmd-reply/+ by a client of its own.
		ccfg := cloudcmd.Config{
			BrokerURL: icfg.BrokerURL, ClientID: c.clientID + "-cmd", Username: icfg.Username, Password: icfg.Password,
			TLS: icfg.TLS, Gateway: f.Gateway, Logger: log.With("component", "command"),
		}
		if bus != nil {
			ccfg.Store = bus.Commands() // queued commands outlive this instance
		}
		cmds, err := cloudcmd.New(ccfg)
		if err != nil {
			ln.Close()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cmds.Run(ctx); err != nil {
				errc <- err
				cancel()
			}
		}()
		api := http.NewServeMux()
		cmds.Register(api)
		c.embedded.ident.registerAPI(api) // a no-op without the embedded broker's registry
		api.Handle("/", f.Handler(fleet.HTTPOptions{Health: in.Health, Metrics: func(w io.Writer) { in.WriteMetrics(w); metrics(w) }}))
		if c.tokens == "" {
			log.Error("HTTP API without a token file: every request except /healthz is refused with 401",
				"hint", "create a token with: cloudd token create -tokens FILE -name NAME -role operator; then start cloudd with -tokens FILE (or LULING_CLOUD_TOKENS=FILE)")
		}
		tokens := auth.NewTokenAuthenticator(c.tokens, auth.TokenOptions{Logger: log.With("component", "auth")})
		handler, closeWeb, err := withPlatform(c, api, tokens, f, cmds, log)
		if err != nil {
			ln.Close()
			return err
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		srv.RegisterOnShutdown(closeWeb)
		log.Info("http api listening", "addr", ln.Addr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http api on %s: %w", c.httpAddr, err)
				cancel()
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			srv.Shutdown(sctx)
		}()
	}
	log.Info("cloudd starting", "engine", c.engine.engine, "broker", icfg.BrokerURL, "nats", c.engine.natsURL, "client_id", c.clientID, "group", c.group, "influx", c.influxURL, "bucket", c.influxBucket)
	if err := in.Run(ctx); err != nil {
		errc <- err
	}
	cancel()
	wg.Wait()
	close(errc)
	for err := range errc {
		return err
	}
	log.Info("cloudd stopped")
	return nil
}

func hashPassword(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return &usageError{msg: "hash-password takes no arguments: it reads the password from stdin"}
	}
	h, err := hashFromStdin("hash-password", stdin) // gatewaycmd.go
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, h)
	return err
}
