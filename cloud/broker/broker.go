// Package broker is cloudd's embedded MQTT broker (mochi-mqtt/server/v2),
// used when no external broker is configured so that one machine runs the
// whole cloud side with nothing else installed.
//
// Gateways authenticate with the username "{site}/{gateway}" and a password
// whose bcrypt hash is listed in a YAML credentials file:
//
//	gateways:
//	  - site: harbor-view
//	    gateway: gw-01
//	    password: $2a$10$...   # from `cloudd hash-password`
//
// Gateways may also come from the gateway registry (Config.Gateways,
// cloud/registry's live view), asked first at every login: a password
// hash, or client certificates from the site CA (cloud/pki) on the TLS
// listener when Config.TLS has ClientCAs. A verified certificate whose
// subject CN is "{site}/{gateway}" and whose serial the registry lists,
// unrevoked, for that enabled gateway authenticates it; the username may
// be empty (the broker then uses the certificate's) or must be the same.
// The registry is also asked during the TLS handshake, so a revoked
// certificate is refused before any MQTT is read, and Revalidate
// disconnects connected gateways the registry no longer admits.
//
// An ACL hook confines each gateway to its own topics, for everything a
// client can make the broker publish:
//
//   - publish: only to gw/v1/{site}/{gateway}/{telemetry,events,status} and
//     gw/v1/{site}/{gateway}/cmd-reply/{id};
//   - retain: only on gw/v1/{site}/{gateway}/status (the birth message);
//   - Last Will: checked at CONNECT like a publish (and a retained will like
//     a retained publish); a CONNECT whose will the gateway could not publish
//     itself is refused with "not authorized", so a will never reaches
//     another gateway's topics (mochi publishes wills without asking the ACL);
//   - subscribe: only filters under gw/v1/{site}/{gateway}/cmd/, and every
//     delivery, retained messages included, is checked again;
//   - client id: a gateway cannot take over a session (connected or kept)
//     of another user, cloudd's included.
//
// A refused publish is answered as MQTT allows: MQTT 5 gets a negative
// PUBACK at QoS 1, an MQTT 3.1.1 client is disconnected (3.1.1 has no
// negative PUBACK; so is a refused retain at QoS 2), a QoS 0 message is
// dropped.
//
// Gateways reach the broker on a plain TCP listener, a TLS listener (TLS 1.2
// or newer, server certificate from the configuration), or both. A new
// connection has ConnectTimeout (10 s) to finish the TLS handshake and send
// CONNECT. cloudd's own
// clients connect on a private unix socket (in a folder only cloudd's user
// can open) with an internal credential generated at every start; that
// credential is accepted on no other listener, and may use every topic,
// shared subscriptions included. Sessions are kept in memory: a persistent
// session (CleanSession false) survives the client's reconnects but not a
// restart of the broker.
package broker

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/luling-edge/luling/payload"
)

// Credential is one gateway's entry in the credentials file.
type Credential struct {
	Site     string `yaml:"site"`
	Gateway  string `yaml:"gateway"`
	Password string `yaml:"password"` // bcrypt hash
}

type credFile struct {
	Gateways []Credential `yaml:"gateways"`
}

// LoadCredentials reads a credentials file and returns the bcrypt hashes by
// username ("{site}/{gateway}").
func LoadCredentials(path string) (map[string][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("broker: credentials: %w", err)
	}
	return ParseCredentials(path, data)
}

// ParseCredentials parses credentials file content; name is used in errors.
func ParseCredentials(name string, data []byte) (map[string][]byte, error) {
	var f credFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("broker: credentials %s: %w", name, err)
	}
	out := make(map[string][]byte, len(f.Gateways))
	for i, c := range f.Gateways {
		where := fmt.Sprintf("broker: credentials %s: gateways[%d]", name, i)
		if !payload.ValidID(c.Site) || !payload.ValidID(c.Gateway) {
			return nil, fmt.Errorf("%s: site %q, gateway %q: want [a-z0-9-]{1,64} each", where, c.Site, c.Gateway)
		}
		if _, err := bcrypt.Cost([]byte(c.Password)); err != nil {
			return nil, fmt.Errorf("%s (%s/%s): password: want a bcrypt hash from `cloudd hash-password`: %w", where, c.Site, c.Gateway, err)
		}
		user := c.Site + "/" + c.Gateway
		if _, dup := out[user]; dup {
			return nil, fmt.Errorf("%s: %s listed twice", where, user)
		}
		out[user] = []byte(c.Password)
	}
	return out, nil
}

// HashPassword returns the bcrypt hash of a password for the credentials
// file.
func HashPassword(password []byte) (string, error) {
	if len(password) == 0 {
		return "", errors.New("broker: empty password")
	}
	h, err := bcrypt.GenerateFromPassword(password, bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("broker: hash password: %w", err)
	}
	return string(h), nil
}

// Config configures the embedded broker.
type Config struct {
	// Listen is the host:port of the plain TCP listener for gateways; empty
	// opens none.
	Listen string
	// TLSListen is the host:port of the TLS listener for gateways; empty
	// opens none. It needs TLS.
	TLSListen string
	// TLS configures the TLS listener: at least a server certificate. The
	// broker raises MinVersion to TLS 1.2. With ClientCAs set, a client
	// certificate from those CAs authenticates its gateway (see
	// CertIdentity) when Gateways admits its serial; ClientAuth
	// tls.RequireAndVerifyClientCert makes one mandatory,
	// tls.VerifyClientCertIfGiven lets password logins in as well.
	TLS         *tls.Config
	Credentials map[string][]byte // bcrypt hash by "{site}/{gateway}"
	// Gateways is the gateway registry, asked before Credentials.
	Gateways Gateways
	// ConnectTimeout is how long a new connection may take to finish the
	// TLS handshake and send CONNECT before it is closed; 0 means 10 s.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// MaxPacketBytes is the largest MQTT packet the broker reads: a batch of
// payload.MaxBodyBytes with room for the topic and properties. A larger
// packet closes the connection.
const MaxPacketBytes = payload.MaxBodyBytes + 64<<10

// Listener ids, as mochi reports them in cl.Net.Listener.
const (
	listenerInternal = "internal"
	listenerTCP      = "mqtt"
	listenerTLS      = "mqtt-tls"
)

// Broker is a running embedded broker.
type Broker struct {
	srv      *mqtt.Server
	dir      string // holds the internal socket
	socket   *listener
	plain    *listener // nil without Config.Listen
	tls      *listener // nil without Config.TLSListen
	user     string
	password string
	hook     *aclHook
}

// Start starts the broker and its listeners.
func Start(cfg Config) (*Broker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = slog.New(namedEmpty(cfg.Logger.Handler()))
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	var tlsCfg *tls.Config
	switch {
	case cfg.TLSListen != "" && (cfg.TLS == nil || len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil):
		return nil, fmt.Errorf("broker: TLS listener %s: no server certificate configured", cfg.TLSListen)
	case cfg.TLSListen == "" && cfg.TLS != nil:
		return nil, errors.New("broker: TLS configured without a TLS listen address")
	case cfg.TLS != nil:
		tlsCfg = cfg.TLS.Clone()
		tlsCfg.MinVersion = max(tlsCfg.MinVersion, tls.VersionTLS12)
		switch {
		case tlsCfg.ClientAuth == tls.RequestClientCert || tlsCfg.ClientAuth == tls.RequireAnyClientCert:
			return nil, errors.New("broker: TLS client certificates must be verified: use tls.VerifyClientCertIfGiven or tls.RequireAndVerifyClientCert with ClientCAs")
		case tlsCfg.ClientAuth != tls.NoClientCert && tlsCfg.ClientCAs == nil:
			return nil, errors.New("broker: TLS client certificates required but no client CA configured")
		}
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("broker: generate internal credential: %w", err)
	}
	// MkdirTemp creates the folder with mode 0700: only cloudd's user can
	// reach the socket inside.
	dir, err := os.MkdirTemp("", "cloudd-broker-")
	if err != nil {
		return nil, fmt.Errorf("broker: folder for the internal socket: %w", err)
	}
	b := &Broker{dir: dir, user: "cloudd-internal", password: hex.EncodeToString(secret)}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumSessionExpiryInterval = 7 * 24 * 3600
	// mochi allocates a packet's claimed length before reading it, CONNECT
	// included: without a limit one unauthenticated client could make it
	// allocate 256 MiB per connection.
	caps.MaximumPacketSize = MaxPacketBytes
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: cfg.Logger, InlineClient: false})
	h := &aclHook{srv: srv, creds: cfg.Credentials, gws: cfg.Gateways, user: b.user, password: b.password, log: cfg.Logger,
		verify: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)), verifyWait: 5 * time.Second}
	b.hook = h
	if tlsCfg != nil && tlsCfg.ClientCAs != nil {
		tlsCfg.VerifyConnection = h.verifyConnection
	}
	if err := srv.AddHook(h, nil); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("broker: add auth hook: %w", err)
	}
	limit := cfg.ConnectTimeout
	b.socket = &listener{id: listenerInternal, network: "unix", addr: filepath.Join(dir, "mqtt.sock"), limit: limit}
	ls := []*listener{b.socket}
	if cfg.Listen != "" {
		b.plain = &listener{id: listenerTCP, network: "tcp", addr: cfg.Listen, limit: limit}
		ls = append(ls, b.plain)
	}
	if cfg.TLSListen != "" {
		b.tls = &listener{id: listenerTLS, network: "tcp", addr: cfg.TLSListen, tls: tlsCfg, limit: limit}
		ls = append(ls, b.tls)
	}
	b.srv = srv
	for _, l := range ls {
		l.srv = srv
		if err := srv.AddListener(l); err != nil {
			b.Close()
			return nil, fmt.Errorf("broker: listen on %s: %w", l.Address(), err)
		}
	}
	if err := srv.Serve(); err != nil {
		b.Close()
		return nil, fmt.Errorf("broker: serve: %w", err)
	}
	return b, nil
}

// Addr returns the plain TCP listener's address (host:port), or "" when
// there is none.
func (b *Broker) Addr() string {
	if b.plain == nil {
		return ""
	}
	return b.plain.Address()
}

// TLSAddr returns the TLS listener's address (host:port), or "" when there
// is none.
func (b *Broker) TLSAddr() string {
	if b.tls == nil {
		return ""
	}
	return b.tls.Address()
}

// URL returns the unix:// URL of the broker's private socket, where cloudd's
// own clients connect with InternalCredential. Gateway credentials work
// there too (tests use it); the socket is reachable only by cloudd's user.
func (b *Broker) URL() string { return "unix://" + b.socket.Address() }

// InternalCredential returns the username and password of cloudd's own
// clients, valid on URL until the broker stops.
func (b *Broker) InternalCredential() (user, password string) { return b.user, b.password }

// Close stops the broker and removes its socket.
func (b *Broker) Close() error {
	err := b.srv.Close()
	os.RemoveAll(b.dir)
	return err
}

// aclHook authenticates gateways against bcrypt hashes and confines them
// to their own topics.
type aclHook struct {
	mqtt.HookBase
	srv      *mqtt.Server
	creds    map[string][]byte
	gws      Gateways // nil: none
	user     string
	password string
	log      *slog.Logger
	// verify holds a slot per bcrypt comparison running: a flood of
	// logins, valid or not, takes at most half the CPUs, and a login
	// that finds no free slot within verifyWait is refused.
	verify     chan struct{}
	verifyWait time.Duration
}

func (h *aclHook) ID() string { return "luling-gateway-acl" }

func (h *aclHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketRead, mqtt.OnPublish:
		return true
	}
	return false
}

// OnConnect refuses a CONNECT whose Last Will the client may not publish
// (mochi publishes wills without OnACLCheck). It runs before
// OnConnectAuthenticate, which checks the password.
func (h *aclHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	adoptCertIdentity(cl)
	if h.willAllowed(cl) {
		return nil
	}
	w := &cl.Properties.Will
	h.log.Warn("broker: refused connect: will not allowed", "username", string(cl.Properties.Username), "client_id", cl.ID,
		"remote", cl.Net.Remote, "will_topic", w.TopicName, "will_retain", w.Retain)
	code := packets.ErrNotAuthorized
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.ErrBadUsernameOrPassword // mochi sends it as 3.1.1's "not authorized" (5)
	}
	_ = h.srv.SendConnack(cl, code, false, nil)
	return packets.ErrNotAuthorized
}

// willAllowed reports whether the client's Last Will (if any) stays within
// what it may publish and retain.
func (h *aclHook) willAllowed(cl *mqtt.Client) bool {
	w := &cl.Properties.Will
	user := string(cl.Properties.Username)
	if atomic.LoadUint32(&w.Flag) == 0 || user == h.user { // the internal user's password is checked next
		return true
	}
	return Allowed(user, w.TopicName, true) && (!w.Retain || RetainAllowed(user, w.TopicName))
}

func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(cl.Properties.Username) // the certificate's gateway when it gave none
	if user == h.user {
		return cl.Net.Listener == listenerInternal && subtle.ConstantTimeCompare(pk.Connect.Password, []byte(h.password)) == 1
	}
	ok, byCert := h.certLogin(cl)
	if byCert && !ok {
		return false
	}
	var hash []byte
	if !byCert {
		hash, ok = h.passwordHash(user)
	}
	if ok && !byCert {
		t := time.NewTimer(h.verifyWait)
		select {
		case h.verify <- struct{}{}:
			t.Stop()
		case <-t.C:
			h.log.Warn("broker: refused connect: too many logins at once", "username", user, "client_id", cl.ID, "remote", cl.Net.Remote)
			return false
		}
		err := bcrypt.CompareHashAndPassword(hash, pk.Connect.Password)
		<-h.verify
		ok = err == nil
	}
	if !ok {
		h.log.Warn("broker: authentication failed", "username", user, "client_id", cl.ID, "remote", cl.Net.Remote, "listener", cl.Net.Listener)
		return false
	}
	// A client id whose session belongs to another user cannot be taken
	// over: mochi would disconnect that client (and publish its will) and,
	// without CleanSession, hand its subscriptions and in-flight messages
	// to the newcomer, and in-flight messages are resent without ACL check.
	if other, ok := h.srv.Clients.Get(cl.ID); ok && string(other.Properties.Username) != user {
		h.log.Warn("broker: refused connect: client id belongs to another user's session", "username", user, "client_id", cl.ID, "remote", cl.Net.Remote)
		return false
	}
	return h.willAllowed(cl) // checked in OnConnect already; kept here so that auth alone never admits a foreign will
}

func (h *aclHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	if user == h.user {
		return true
	}
	ok := Allowed(user, topic, write)
	if !ok {
		h.log.Warn("broker: denied", "username", user, "client_id", cl.ID, "topic", topic, "publish", write)
	}
	return ok
}

// retainRefused reports whether pk is a retained publish that cl may not
// make (OnACLCheck, which sees only the topic, may have allowed it).
func (h *aclHook) retainRefused(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(cl.Properties.Username)
	return pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Retain && !cl.Net.Inline &&
		user != h.user && !RetainAllowed(user, pk.TopicName)
}

// OnPacketRead closes the connection of a client whose refused retained
// publish cannot be refused in a PUBACK (MQTT 3.1.1 at QoS 1, or QoS 2).
// As for a publish the ACL refuses, mochi then publishes the client's
// (checked) will; an MQTT 5 client first gets DISCONNECT "not authorized".
func (h *aclHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	v5 := cl.Properties.ProtocolVersion == 5
	if !h.retainRefused(cl, pk) || pk.FixedHeader.Qos == 0 || pk.FixedHeader.Qos == 1 && v5 {
		return pk, nil
	}
	h.log.Warn("broker: denied retain, disconnecting", "username", string(cl.Properties.Username), "client_id", cl.ID, "topic", pk.TopicName)
	if v5 {
		_ = h.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
	return pk, packets.ErrRejectPacket
}

// OnPublish refuses the other retained publishes: dropped at QoS 0 (as the
// ACL drops a QoS 0 publish), a negative PUBACK for MQTT 5 at QoS 1. mochi
// would deliver a packet whose error it does not act on, so only the
// PUBACK case returns anything but ErrRejectPacket.
func (h *aclHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !h.retainRefused(cl, pk) {
		return pk, nil
	}
	h.log.Warn("broker: denied retain", "username", string(cl.Properties.Username), "client_id", cl.ID, "topic", pk.TopicName)
	if pk.FixedHeader.Qos == 1 && cl.Properties.ProtocolVersion == 5 {
		return pk, packets.ErrNotAuthorized
	}
	return pk, packets.ErrRejectPacket
}

// RetainAllowed reports whether gateway user "{site}/{gateway}" may retain
// a message on topic: only its own status topic (birth and Last Will).
func RetainAllowed(user, topic string) bool {
	site, gw, ok := strings.Cut(user, "/")
	return ok && payload.ValidID(site) && payload.ValidID(gw) && topic == payload.StatusTopic(site, gw)
}

// Allowed reports whether gateway user "{site}/{gateway}" may publish to
// topic (write) or subscribe to the filter topic (!write).
func Allowed(user, topic string, write bool) bool {
	site, gw, ok := strings.Cut(user, "/")
	if !ok || !payload.ValidID(site) || !payload.ValidID(gw) {
		return false
	}
	base := payload.Base(site, gw) + "/"
	rest, ok := strings.CutPrefix(topic, base)
	if !ok {
		return false
	}
	if write {
		if strings.ContainsAny(rest, "+#") {
			return false
		}
		switch rest {
		case payload.SuffixTelemetry, payload.SuffixEvents, payload.SuffixStatus, payload.SuffixDropped:
			return true
		}
		id, ok := strings.CutPrefix(rest, payload.SuffixCmdReply+"/")
		return ok && id != "" && !strings.Contains(id, "/")
	}
	if rest == payload.SuffixAck {
		return true
	}
	id, ok := strings.CutPrefix(rest, payload.SuffixCmd+"/")
	return ok && id != ""
}

// Session reports whether the broker holds a session for clientID, whether
// that client is connected now, and how many messages wait in its session
// (sent and unacknowledged, or queued while it was away).
func (b *Broker) Session(clientID string) (known, connected bool, waiting int) {
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok {
		return false, false, 0
	}
	return true, !cl.Closed(), cl.State.Inflight.Len()
}
