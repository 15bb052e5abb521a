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
// An ACL hook confines each gateway to its own topics: it may publish only
// to gw/v1/{site}/{gateway}/{telemetry,events,status} and
// gw/v1/{site}/{gateway}/cmd-reply/{id}, and subscribe only to filters under
// gw/v1/{site}/{gateway}/cmd/. A publish outside that is refused (an MQTT
// 3.1.1 client is disconnected, as the protocol has no negative PUBACK).
// cloudd's own ingest client logs in with an internal credential generated
// at every start and may use every topic, shared subscriptions included.
// Sessions are kept in memory: a persistent session (CleanSession false)
// survives the client's reconnects but not a restart of the broker.
package broker

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
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
	Listen      string            // host:port of the MQTT listener
	Credentials map[string][]byte // bcrypt hash by "{site}/{gateway}"
	Logger      *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	srv      *mqtt.Server
	listener *listeners.TCP
	user     string
	password string
}

// Start starts the broker and its listener.
func Start(cfg Config) (*Broker, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("broker: generate internal credential: %w", err)
	}
	b := &Broker{user: "cloudd-internal", password: hex.EncodeToString(secret)}
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumSessionExpiryInterval = 7 * 24 * 3600
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: cfg.Logger, InlineClient: false})
	h := &aclHook{creds: cfg.Credentials, user: b.user, password: b.password, log: cfg.Logger}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker: add auth hook: %w", err)
	}
	b.listener = listeners.NewTCP(listeners.Config{ID: "mqtt", Address: cfg.Listen})
	if err := srv.AddListener(b.listener); err != nil {
		return nil, fmt.Errorf("broker: listen on %s: %w", cfg.Listen, err)
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("broker: serve on %s: %w", cfg.Listen, err)
	}
	b.srv = srv
	return b, nil
}

// Addr returns the listener's address (host:port).
func (b *Broker) Addr() string { return b.listener.Address() }

// URL returns a tcp:// URL for clients on this machine.
func (b *Broker) URL() string {
	addr := b.Addr()
	if strings.HasPrefix(addr, "[::]:") || strings.HasPrefix(addr, "0.0.0.0:") {
		addr = "127.0.0.1:" + addr[strings.LastIndexByte(addr, ':')+1:]
	}
	return "tcp://" + addr
}

// InternalCredential returns the username and password of cloudd's own
// client, valid until the broker stops.
func (b *Broker) InternalCredential() (user, password string) { return b.user, b.password }

// Close stops the broker.
func (b *Broker) Close() error { return b.srv.Close() }

// aclHook authenticates gateways against bcrypt hashes and confines them
// to their own topics.
type aclHook struct {
	mqtt.HookBase
	creds    map[string][]byte
	user     string
	password string
	log      *slog.Logger
}

func (h *aclHook) ID() string { return "luling-gateway-acl" }

func (h *aclHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *aclHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	if user == h.user {
		return subtle.ConstantTimeCompare(pk.Connect.Password, []byte(h.password)) == 1
	}
	hash, ok := h.creds[user]
	if !ok || bcrypt.CompareHashAndPassword(hash, pk.Connect.Password) != nil {
		h.log.Warn("broker: authentication failed", "username", user, "client_id", cl.ID, "remote", cl.Net.Remote)
		return false
	}
	return true
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
		case payload.SuffixTelemetry, payload.SuffixEvents, payload.SuffixStatus:
			return true
		}
		id, ok := strings.CutPrefix(rest, payload.SuffixCmdReply+"/")
		return ok && id != "" && !strings.Contains(id, "/")
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
