package uplink

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/luling-edge/luling/internal/clock"
	"github.com/luling-edge/luling/payload"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultWindow         = 32
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultReconnectMax   = 60 * time.Second
	DefaultAckTimeout     = 60 * time.Second
	DefaultCloseTimeout   = 2 * time.Second
	DefaultConfirmWait    = 15 * time.Second

	// MaxWindow bounds Window: MQTT packet identifiers are 16 bits and the
	// broker's own receive limits are far below this.
	MaxWindow = 4096
)

// Options configure an Uplink. Brokers, Site and Gateway are required.
type Options struct {
	// Brokers are tried in order on every connection attempt (failover).
	// Schemes: tcp, mqtt, ssl, tls, mqtts, tcps, ws, wss.
	Brokers []string
	// ClientID defaults to "luling-{site}-{gateway}".
	ClientID string
	Username string
	Password string
	// TLS is used for ssl/tls/mqtts/tcps/wss brokers (see TLSConfig); nil
	// means the system roots and no client certificate.
	TLS *tls.Config

	Site    string
	Gateway string

	// KeepAlive is the MQTT keep-alive interval (default 30 s; whole
	// seconds on the wire, at least 1 s).
	KeepAlive time.Duration
	// ConnectTimeout bounds dialling, the TLS handshake and CONNECT/CONNACK
	// per broker (default 10 s).
	ConnectTimeout time.Duration
	// ReconnectMax caps the jittered exponential reconnect backoff
	// (default 60 s).
	ReconnectMax time.Duration
	// Window is the most publishes in flight without a PUBACK (default 32).
	Window int
	// AckTimeout: a connection whose oldest in-flight publish has had no
	// PUBACK for this long is dropped and its messages replayed on the next
	// one (default 60 s).
	AckTimeout time.Duration
	// CloseTimeout bounds the shutdown (waiting for in-flight PUBACKs, the
	// offline status) and the wait for Paho to settle a lost connection's
	// publishes (default 2 s).
	CloseTimeout time.Duration
	// ConfirmWait: when the cloud's acknowledgements have not moved for
	// this long while messages the broker acknowledged wait above them
	// (the broker dropped the tail of a burst, so the cloud sees no gap),
	// those messages are published again (default 15 s; see delivery.go).
	ConfirmWait time.Duration

	// Birth returns the birth message, called at each connect. The uplink
	// fills in Site, Gateway, Online=true and, when zero, Time. Nil means
	// a birth without version or devices.
	Birth func() *payload.Status
	// OnCommand, when set, receives every message on
	// gw/v1/{site}/{gateway}/cmd/#, in arrival order, from one goroutine.
	// It should return quickly: while it runs, further commands wait.
	OnCommand func(topic string, body []byte)

	// Logger logs the connection's life. Its lines carry the caller's
	// attributes only (the gateway's logger has the site and gateway).
	Logger *slog.Logger
	// Clock times the reconnect back-off, the PUBACK bounds and the status
	// and counter times (the real clock when nil). MQTT's own timers, the
	// keep-alive and the connect timeout, run inside paho on the real
	// clock, and so do the bounds that only keep a shutdown short.
	Clock clock.Clock
}

var schemes = map[string]bool{
	"tcp": true, "mqtt": true, "ssl": true, "tls": true, "mqtts": true, "tcps": true, "ws": true, "wss": true,
}

// withDefaults checks o and returns a copy with defaults filled in.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !payload.ValidID(o.Site) {
		bad("site %q: want [a-z0-9-]{1,64}", o.Site)
	}
	if !payload.ValidID(o.Gateway) {
		bad("gateway %q: want [a-z0-9-]{1,64}", o.Gateway)
	}
	if len(o.Brokers) == 0 {
		bad("brokers: none given (want at least one URL like tcp://host:1883)")
	}
	for i, b := range o.Brokers {
		if err := checkBroker(b); err != nil {
			bad("brokers[%d]: %w", i, err)
		}
	}
	if o.Window < 0 || o.Window > MaxWindow {
		bad("window %d: want 1..%d (0 for the default %d)", o.Window, MaxWindow, DefaultWindow)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"keep_alive", o.KeepAlive}, {"connect_timeout", o.ConnectTimeout}, {"reconnect_max", o.ReconnectMax},
		{"ack_timeout", o.AckTimeout}, {"close_timeout", o.CloseTimeout}, {"confirm_wait", o.ConfirmWait}} {
		if d.v < 0 {
			bad("%s %v: want a positive duration (0 for the default)", d.name, d.v)
		}
	}
	if o.KeepAlive > 0 && o.KeepAlive < time.Second {
		bad("keep_alive %v: want at least 1s", o.KeepAlive)
	}
	if err := errors.Join(errs...); err != nil {
		return o, err
	}
	if o.ClientID == "" {
		o.ClientID = "luling-" + o.Site + "-" + o.Gateway
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.KeepAlive, DefaultKeepAlive)
	def(&o.ConnectTimeout, DefaultConnectTimeout)
	def(&o.ReconnectMax, DefaultReconnectMax)
	def(&o.AckTimeout, DefaultAckTimeout)
	def(&o.CloseTimeout, DefaultCloseTimeout)
	def(&o.ConfirmWait, DefaultConfirmWait)
	o.Clock = clock.OrReal(o.Clock)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Brokers = append([]string(nil), o.Brokers...)
	return o, nil
}

func checkBroker(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if !schemes[u.Scheme] {
		return fmt.Errorf("%q: scheme %q: want tcp, mqtt, ssl, tls, mqtts, tcps, ws or wss", s, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: no host (want %s://host:port)", s, u.Scheme)
	}
	return nil
}

// redact returns a broker URL without its password, for logs and Stats.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}
