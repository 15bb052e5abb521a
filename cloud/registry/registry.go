// Package registry is cloudd's gateway registry: which gateways exist,
// whether each may connect, and how each proves who it is (a password
// whose bcrypt hash is kept, client certificates from the site CA by
// serial number, or both).
//
// The registry is one JSON file (mode 0600) that `cloudd gateway …` and
// the HTTP API change by read-modify-write under an advisory lock
// (PATH.lock), replacing the file atomically. A running cloudd holds a
// Live view of it that re-reads the file when it changes (another inode,
// size or modification time), so a gateway added, disabled, removed or a
// certificate revoked by the CLI takes effect within CheckEvery without a
// restart; the API's own changes take effect at once. The embedded broker
// asks the Live view at every login and TLS handshake, and re-checks the
// connected gateways after each reload.
//
//	{
//	  "version": 1,
//	  "gateways": [
//	    {"site": "harbor-view", "id": "gw-01", "enabled": true,
//	     "password_hash": "$2a$10$…",
//	     "certificates": [{"serial": "5f…", "issued": "…", "not_after": "…", "revoked": "…"}],
//	     "created": "2026-12-04T16:00:00Z"}
//	  ]
//	}
package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/internal/safefile"
	"github.com/luling-edge/luling/payload"
)

// Cert is a client certificate issued to a gateway.
type Cert struct {
	// Serial is the certificate's serial number in lowercase hex without
	// leading zeros (big.Int.Text(16)).
	Serial   string     `json:"serial"`
	Issued   time.Time  `json:"issued"`
	NotAfter time.Time  `json:"not_after"`
	Revoked  *time.Time `json:"revoked,omitempty"`
}

// Gateway is one registry entry.
type Gateway struct {
	Site    string `json:"site"`
	ID      string `json:"id"`
	Enabled bool   `json:"enabled"`
	// PasswordHash is a bcrypt hash; empty: the gateway has no password
	// and logs in with a certificate only.
	PasswordHash string    `json:"password_hash,omitempty"`
	Certs        []Cert    `json:"certificates,omitempty"`
	Created      time.Time `json:"created"`
}

// User is the gateway's MQTT username and certificate identity,
// "{site}/{id}".
func (g Gateway) User() string { return g.Site + "/" + g.ID }

// ValidCert reports whether serial is one of g's certificates and not
// revoked.
func (g Gateway) ValidCert(serial string) bool {
	for _, c := range g.Certs {
		if c.Serial == serial {
			return c.Revoked == nil
		}
	}
	return false
}

type file struct {
	Version  int       `json:"version"`
	Gateways []Gateway `json:"gateways"`
}

// Errors callers branch on.
var (
	ErrNotFound = errors.New("no such gateway")
	ErrExists   = errors.New("gateway exists")
	ErrNoCert   = errors.New("no such certificate")
)

// CheckID validates a site and gateway id pair.
func CheckID(site, id string) error {
	if !payload.ValidID(site) || !payload.ValidID(id) {
		return fmt.Errorf("site %q, gateway %q: want [a-z0-9-]{1,64} each", site, id)
	}
	return nil
}

// Parse decodes registry file content; name is used in errors.
func Parse(name string, b []byte) ([]Gateway, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("registry %s: %w (want {\"version\": 1, \"gateways\": [...]} as written by cloudd gateway)", name, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("registry %s: data after the JSON object", name)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("registry %s: version %d: want 1", name, f.Version)
	}
	seen := make(map[string]bool, len(f.Gateways))
	serials := map[string]string{}
	for i, g := range f.Gateways {
		where := fmt.Sprintf("registry %s: gateways[%d]", name, i)
		if err := CheckID(g.Site, g.ID); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if seen[g.User()] {
			return nil, fmt.Errorf("%s: %s listed twice", where, g.User())
		}
		seen[g.User()] = true
		if g.PasswordHash != "" {
			if _, err := bcrypt.Cost([]byte(g.PasswordHash)); err != nil {
				return nil, fmt.Errorf("%s (%s): password_hash: want a bcrypt hash: %w", where, g.User(), err)
			}
		}
		for j, c := range g.Certs {
			if !validSerial(c.Serial) {
				return nil, fmt.Errorf("%s (%s): certificates[%d]: serial %q: want lowercase hex without leading zeros", where, g.User(), j, c.Serial)
			}
			if other, dup := serials[c.Serial]; dup {
				return nil, fmt.Errorf("%s (%s): certificates[%d]: serial %s already belongs to %s", where, g.User(), j, c.Serial, other)
			}
			serials[c.Serial] = g.User()
		}
	}
	return f.Gateways, nil
}

func validSerial(s string) bool {
	if s == "" || len(s) > 40 || s[0] == '0' {
		return false
	}
	return strings.Trim(s, "0123456789abcdef") == ""
}

// read reads and parses path; a missing file holds no gateways.
func read(path string) ([]Gateway, fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("registry: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: %w", err)
	}
	gws, err := Parse(path, b)
	return gws, fi, err
}

// File changes a registry file: what `cloudd gateway` and the API do.
type File struct {
	Path string
	// Now is the time source for Created and revocations; time.Now when nil.
	Now func() time.Time
}

func (f *File) now() time.Time {
	if f.Now != nil {
		return f.Now().UTC().Truncate(time.Second)
	}
	return time.Now().UTC().Truncate(time.Second)
}

// List returns the registry's gateways.
func (f *File) List() ([]Gateway, error) {
	gws, _, err := read(f.Path)
	return gws, err
}

// Get returns one gateway; ErrNotFound if there is none.
func (f *File) Get(site, id string) (Gateway, error) {
	gws, err := f.List()
	if err != nil {
		return Gateway{}, err
	}
	for _, g := range gws {
		if g.Site == site && g.ID == id {
			return g, nil
		}
	}
	return Gateway{}, fmt.Errorf("registry %s: %s/%s: %w", f.Path, site, id, ErrNotFound)
}

// Add adds an enabled gateway without credentials; ErrExists if it is
// there already.
func (f *File) Add(site, id string) (Gateway, error) {
	if err := CheckID(site, id); err != nil {
		return Gateway{}, fmt.Errorf("registry: %w", err)
	}
	g := Gateway{Site: site, ID: id, Enabled: true, Created: f.now()}
	err := f.update(func(gws []Gateway) ([]Gateway, error) {
		for _, o := range gws {
			if o.Site == site && o.ID == id {
				return nil, fmt.Errorf("registry %s: %s/%s: %w", f.Path, site, id, ErrExists)
			}
		}
		return append(gws, g), nil
	})
	return g, err
}

// Remove deletes a gateway and its certificates' records.
func (f *File) Remove(site, id string) error {
	return f.update(func(gws []Gateway) ([]Gateway, error) {
		i, err := f.find(gws, site, id)
		if err != nil {
			return nil, err
		}
		return append(gws[:i:i], gws[i+1:]...), nil
	})
}

// SetEnabled enables or disables a gateway.
func (f *File) SetEnabled(site, id string, on bool) error {
	return f.change(site, id, func(g *Gateway) error { g.Enabled = on; return nil })
}

// SetPassword sets a gateway's bcrypt password hash; "" removes the
// password (certificates only).
func (f *File) SetPassword(site, id, hash string) error {
	if hash != "" {
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("registry: %s/%s: password hash: %w", site, id, err)
		}
	}
	return f.change(site, id, func(g *Gateway) error { g.PasswordHash = hash; return nil })
}

// AddCert records a certificate issued to a gateway.
func (f *File) AddCert(site, id string, c Cert) error {
	if !validSerial(c.Serial) {
		return fmt.Errorf("registry: %s/%s: serial %q: want lowercase hex without leading zeros", site, id, c.Serial)
	}
	return f.update(func(gws []Gateway) ([]Gateway, error) {
		i, err := f.find(gws, site, id)
		if err != nil {
			return nil, err
		}
		for _, g := range gws {
			for _, o := range g.Certs {
				if o.Serial == c.Serial {
					return nil, fmt.Errorf("registry %s: serial %s already belongs to %s", f.Path, c.Serial, g.User())
				}
			}
		}
		gws[i].Certs = append(gws[i].Certs, c)
		return gws, nil
	})
}

// RevokeCert marks a gateway's certificate revoked; ErrNoCert if the
// gateway has no certificate with that serial. Revoking twice keeps the
// first time.
func (f *File) RevokeCert(site, id, serial string) error {
	now := f.now()
	return f.change(site, id, func(g *Gateway) error {
		for i := range g.Certs {
			if g.Certs[i].Serial == serial {
				if g.Certs[i].Revoked == nil {
					g.Certs[i].Revoked = &now
				}
				return nil
			}
		}
		return fmt.Errorf("registry %s: %s: certificate %s: %w", f.Path, g.User(), serial, ErrNoCert)
	})
}

func (f *File) find(gws []Gateway, site, id string) (int, error) {
	for i, g := range gws {
		if g.Site == site && g.ID == id {
			return i, nil
		}
	}
	return -1, fmt.Errorf("registry %s: %s/%s: %w", f.Path, site, id, ErrNotFound)
}

// change applies fn to one gateway under the lock.
func (f *File) change(site, id string, fn func(*Gateway) error) error {
	return f.update(func(gws []Gateway) ([]Gateway, error) {
		i, err := f.find(gws, site, id)
		if err != nil {
			return nil, err
		}
		return gws, fn(&gws[i])
	})
}

// update applies change to the file's gateways under the lock and writes
// the result.
func (f *File) update(change func([]Gateway) ([]Gateway, error)) error {
	return safefile.UpdateJSON(f.Path, "registry", f.List, change, func(gws []Gateway) any {
		if gws == nil {
			gws = []Gateway{}
		}
		return file{Version: 1, Gateways: gws}
	})
}
