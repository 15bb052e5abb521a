package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/luling-edge/luling/cloud/broker"
)

// embeddedConfig is the embedded broker's part of the configuration, used
// when -broker-url is empty.
type embeddedConfig struct {
	listen      string // plain TCP; empty: none
	tlsListen   string // TLS; empty: none
	tlsCert     string
	tlsKey      string
	credentials string
	ident       *identity // registry, site CA, client certificates: identity.go
}

func (e *embeddedConfig) register(fs *flag.FlagSet, env func(name, def string) string) {
	fs.StringVar(&e.listen, "broker-listen", env("BROKER_LISTEN", "127.0.0.1:1883"), `plain MQTT listen address of the embedded broker; "" opens none [LULING_CLOUD_BROKER_LISTEN]`)
	fs.StringVar(&e.tlsListen, "broker-tls-listen", env("BROKER_TLS_LISTEN", ""), "MQTT over TLS listen address of the embedded broker, e.g. :8883; needs -broker-tls-cert and -broker-tls-key [LULING_CLOUD_BROKER_TLS_LISTEN]")
	fs.StringVar(&e.tlsCert, "broker-tls-cert", env("BROKER_TLS_CERT", ""), "PEM server certificate (chain) of the embedded broker's TLS listener [LULING_CLOUD_BROKER_TLS_CERT]")
	fs.StringVar(&e.tlsKey, "broker-tls-key", env("BROKER_TLS_KEY", ""), "PEM private key of -broker-tls-cert [LULING_CLOUD_BROKER_TLS_KEY]")
	fs.StringVar(&e.credentials, "credentials", env("CREDENTIALS", ""), "YAML file of gateway credentials for the embedded broker [LULING_CLOUD_CREDENTIALS]")
	e.ident = &identity{}
	e.ident.register(fs, env)
}

// check validates the embedded broker's flags (only called without
// -broker-url).
func (e *embeddedConfig) check() error {
	for _, l := range []struct{ flag, addr string }{{"-broker-listen", e.listen}, {"-broker-tls-listen", e.tlsListen}} {
		if l.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			return fmt.Errorf("%s %q: want host:port: %v", l.flag, l.addr, err)
		}
	}
	switch {
	case e.listen == "" && e.tlsListen == "":
		return fmt.Errorf(`-broker-listen "" and no -broker-tls-listen: the embedded broker would have no listener for gateways`)
	case e.tlsListen != "" && (e.tlsCert == "" || e.tlsKey == ""):
		return fmt.Errorf("-broker-tls-listen %s needs -broker-tls-cert and -broker-tls-key", e.tlsListen)
	case e.tlsListen == "" && (e.tlsCert != "" || e.tlsKey != ""):
		return fmt.Errorf("-broker-tls-cert and -broker-tls-key need -broker-tls-listen")
	}
	return e.ident.check(e.tlsListen)
}

// start loads the credentials and the server certificate and starts the
// embedded broker.
func (e *embeddedConfig) start(ctx context.Context, log *slog.Logger) (*broker.Broker, error) {
	creds := map[string][]byte{}
	if e.credentials != "" {
		var err error
		if creds, err = broker.LoadCredentials(e.credentials); err != nil {
			return nil, err
		}
	} else if e.ident.registry == "" {
		log.Warn("embedded broker without -registry or -credentials: no gateway can log in")
	}
	cfg := broker.Config{Listen: e.listen, TLSListen: e.tlsListen, Credentials: creds, Logger: log.With("component", "broker")}
	if e.tlsListen != "" {
		cf := &certFiles{cert: e.tlsCert, key: e.tlsKey, log: log.With("component", "broker")}
		if _, err := cf.get(nil); err != nil {
			return nil, err
		}
		cfg.TLS = &tls.Config{GetCertificate: cf.get}
	}
	if err := e.ident.open(&cfg, log); err != nil {
		return nil, err
	}
	b, err := broker.Start(cfg)
	if err != nil {
		return nil, err
	}
	e.ident.follow(ctx, b)
	if host, _, _ := net.SplitHostPort(b.Addr()); host != "" && !isLoopback(host) {
		log.Warn("embedded broker: plain MQTT on a non-loopback address: gateway passwords cross the network in clear text; prefer -broker-tls-listen", "addr", b.Addr())
	}
	log.Info("embedded broker listening", "plain", b.Addr(), "tls", b.TLSAddr(), "gateways", len(creds))
	return b, nil
}

// isLoopback reports whether host (an IP address or a name) is this
// machine only. The unspecified address (every interface) is not.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// certFiles serves the TLS listener's certificate from its files and loads
// them again when either changes (size or modification time), so that a
// renewed certificate is used from the next handshake on: restarting cloudd
// would drop the embedded broker's sessions. A pair that does not load
// (say, the certificate is renewed but the key not yet written) leaves the
// previous one in service.
type certFiles struct {
	cert, key string
	log       *slog.Logger

	mu      sync.Mutex
	stamp   string
	current *tls.Certificate
}

func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	stamp := fileStamp(c.cert) + "|" + fileStamp(c.key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if stamp == c.stamp && c.current != nil {
		return c.current, nil
	}
	cert, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		err = fmt.Errorf("-broker-tls-cert %s / -broker-tls-key %s: %w", c.cert, c.key, err)
		if c.current == nil {
			return nil, err
		}
		if stamp != c.stamp {
			c.log.Warn("embedded broker: cannot load the changed TLS certificate; serving the previous one", "err", err)
		}
	} else {
		c.current = &cert
		if c.stamp != "" {
			c.log.Info("embedded broker: TLS certificate reloaded", "cert", c.cert)
		}
	}
	c.stamp = stamp
	return c.current, nil
}

func fileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d@%d", fi.Size(), fi.ModTime().UnixNano())
}
