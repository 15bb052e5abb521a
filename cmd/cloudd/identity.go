package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/luling-edge/luling/cloud/broker"
	"github.com/luling-edge/luling/cloud/pki"
	"github.com/luling-edge/luling/cloud/registry"
)

// identity is the embedded broker's gateway identities: the registry file
// (-registry), the site CA (-ca-dir) and whether the TLS listener asks
// for client certificates (-broker-tls-client-auth).
type identity struct {
	registry   string
	caDir      string
	clientAuth string

	mu   sync.Mutex // guards the CA: the API issues certificates concurrently
	file *registry.File
	live *registry.Live
	ca   *pki.CA // nil without -ca-dir
	log  *slog.Logger
}

// Client-certificate modes of -broker-tls-client-auth.
const (
	authNone    = "none"
	authIfGiven = "verify-if-given"
	authRequire = "require"
)

func (i *identity) register(fs *flag.FlagSet, env func(name, def string) string) {
	fs.StringVar(&i.registry, "registry", env("REGISTRY", ""), "gateway registry file (JSON, managed with cloudd gateway and the API); the embedded broker follows it without a restart [LULING_CLOUD_REGISTRY]")
	fs.StringVar(&i.caDir, "ca-dir", env("CA_DIR", ""), "folder of the site CA that issues gateway client certificates; created on first use [LULING_CLOUD_CA_DIR]")
	fs.StringVar(&i.clientAuth, "broker-tls-client-auth", env("BROKER_TLS_CLIENT_AUTH", ""), "client certificates on the embedded broker's TLS listener: none, verify-if-given or require (default verify-if-given with -ca-dir, none without) [LULING_CLOUD_BROKER_TLS_CLIENT_AUTH]")
}

// check validates the identity flags; tlsListen is -broker-tls-listen.
func (i *identity) check(tlsListen string) error {
	switch i.clientAuth {
	case "":
		if i.caDir != "" {
			i.clientAuth = authIfGiven
		} else {
			i.clientAuth = authNone
		}
	case authNone, authIfGiven, authRequire:
	default:
		return fmt.Errorf("-broker-tls-client-auth %q: want none, verify-if-given or require", i.clientAuth)
	}
	switch {
	case i.clientAuth != authNone && i.caDir == "":
		return fmt.Errorf("-broker-tls-client-auth %s needs -ca-dir (the site CA that signs gateway certificates)", i.clientAuth)
	case i.clientAuth != authNone && tlsListen == "":
		return fmt.Errorf("-ca-dir (client certificates, -broker-tls-client-auth %s) needs -broker-tls-listen: client certificates come over TLS", i.clientAuth)
	case i.caDir != "" && i.registry == "":
		return fmt.Errorf("-ca-dir needs -registry: the registry records each certificate and its revocation")
	}
	return nil
}

// open loads the registry and the CA and puts them into the broker's
// configuration.
func (i *identity) open(cfg *broker.Config, log *slog.Logger) error {
	if i.registry == "" {
		return nil
	}
	i.log = log
	i.file = &registry.File{Path: i.registry}
	i.live = registry.NewLive(i.registry, registry.LiveOptions{Logger: log.With("component", "registry")})
	cfg.Gateways = i.live
	if i.caDir == "" {
		return nil
	}
	ca, err := pki.Open(i.caDir, "luling")
	if err != nil {
		return err
	}
	i.ca = ca
	if i.clientAuth == authNone {
		return nil
	}
	cfg.TLS.ClientCAs = ca.Pool()
	cfg.TLS.ClientAuth = tls.VerifyClientCertIfGiven
	if i.clientAuth == authRequire {
		cfg.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	log.Info("embedded broker: gateway client certificates from the site CA", "ca", i.caDir, "client_auth", i.clientAuth)
	return nil
}

// follow makes the broker re-check its connected gateways after every
// registry change, and watches the file for changes by the CLI until ctx
// ends.
func (i *identity) follow(ctx context.Context, b *broker.Broker) {
	if i.live == nil {
		return
	}
	i.live.OnChange(func() { b.Revalidate() })
	go i.live.Run(ctx)
	// SIGHUP re-reads the registry at once (the same as its next poll);
	// once a minute, sessions whose certificate expired are ended.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		expiry := time.NewTicker(time.Minute) // sessions on certificates that expired since
		defer expiry.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-expiry.C:
				b.Revalidate()
			case <-hup:
				i.live.Reload()
				i.log.Info("SIGHUP: gateway registry reloaded", "file", i.registry)
			}
		}
	}()
}
