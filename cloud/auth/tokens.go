package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/luling-edge/luling/internal/safefile"
)

// TokenPrefix starts every API token, so that secret scanners and people
// can tell one apart.
const TokenPrefix = "luling_"

// tokenBytes is the token's secret: 256 random bits. Its SHA-256 is what
// the file keeps: a hash of a random 256-bit secret cannot be reversed or
// guessed, so a slow password hash would add nothing but latency.
const tokenBytes = 32

// TokenInfo is one entry of a token file: everything but the secret.
type TokenInfo struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	SHA256  string    `json:"sha256"` // hex SHA-256 of the whole token, prefix included
	Created time.Time `json:"created"`
}

// tokenFile is the file's JSON form.
type tokenFile struct {
	Version int         `json:"version"`
	Tokens  []TokenInfo `json:"tokens"`
}

// entry is a parsed TokenInfo.
type entry struct {
	name string
	role Role
	hash [sha256.Size]byte
}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidTokenName reports whether name may name a token: 1 to 64 letters,
// digits, '.', '_' or '-', starting with a letter or digit.
func ValidTokenName(name string) error {
	if !tokenNameRE.MatchString(name) {
		return fmt.Errorf("token name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// parseTokenFile decodes a token file; path names it in errors.
func parseTokenFile(path string, b []byte) ([]TokenInfo, []entry, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var tf tokenFile
	if err := dec.Decode(&tf); err != nil {
		return nil, nil, fmt.Errorf("token file %s: %w (want {\"version\": 1, \"tokens\": [...]} as written by cloudd token create)", path, err)
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("token file %s: data after the JSON object", path)
	}
	if tf.Version != 1 {
		return nil, nil, fmt.Errorf("token file %s: version %d: want 1", path, tf.Version)
	}
	entries := make([]entry, 0, len(tf.Tokens))
	names := make(map[string]bool, len(tf.Tokens))
	for i, t := range tf.Tokens {
		where := fmt.Sprintf("token file %s: tokens[%d]", path, i)
		if err := ValidTokenName(t.Name); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		if names[t.Name] {
			return nil, nil, fmt.Errorf("%s: name %q appears twice", where, t.Name)
		}
		names[t.Name] = true
		role, err := ParseRole(t.Role)
		if err != nil {
			return nil, nil, fmt.Errorf("%s (%s): %w", where, t.Name, err)
		}
		e := entry{name: t.Name, role: role}
		if h, err := hex.DecodeString(t.SHA256); err != nil || len(h) != sha256.Size {
			return nil, nil, fmt.Errorf("%s (%s): sha256 %q: want 64 hex digits", where, t.Name, t.SHA256)
		} else {
			copy(e.hash[:], h)
		}
		entries = append(entries, e)
	}
	return tf.Tokens, entries, nil
}

// readTokenFile reads and parses path; a missing file is an error that
// wraps fs.ErrNotExist.
func readTokenFile(path string) ([]TokenInfo, []entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("token file: %w", err)
	}
	return parseTokenFile(path, b)
}

// ErrNoSuchToken is returned by Revoke for a name the file does not hold.
var ErrNoSuchToken = errors.New("no such token")

// TokenFile manages a file of hashed API tokens: what `cloudd token`
// does. Changes are read-modify-write under an advisory lock (PATH.lock)
// and replace the file atomically with mode 0600, so a running cloudd
// never reads half a file.
type TokenFile struct {
	Path string
	// Now is the time source for Created; time.Now when nil.
	Now func() time.Time
}

// List returns the file's tokens (no secrets: they are not kept). A
// missing file holds no tokens.
func (f *TokenFile) List() ([]TokenInfo, error) {
	infos, _, err := readTokenFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return infos, err
}

// Create adds a token called name with role and returns the token. It is
// the only time the token is seen: the file keeps its SHA-256.
func (f *TokenFile) Create(name string, role Role) (string, error) {
	if err := ValidTokenName(name); err != nil {
		return "", err
	}
	if role == RoleNone {
		return "", fmt.Errorf("token %s: a role is required (viewer or operator)", name)
	}
	var secret [tokenBytes]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return "", fmt.Errorf("token %s: random source: %w", name, err)
	}
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(token))
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	err := f.update(func(tokens []TokenInfo) ([]TokenInfo, error) {
		for _, t := range tokens {
			if t.Name == name {
				return nil, fmt.Errorf("token %s exists in %s: revoke it first or pick another name", name, f.Path)
			}
		}
		return append(tokens, TokenInfo{Name: name, Role: role.String(), SHA256: hex.EncodeToString(sum[:]), Created: now().UTC().Truncate(time.Second)}), nil
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// Revoke removes the token called name; ErrNoSuchToken if there is none.
func (f *TokenFile) Revoke(name string) error {
	return f.update(func(tokens []TokenInfo) ([]TokenInfo, error) {
		for i, t := range tokens {
			if t.Name == name {
				return append(tokens[:i:i], tokens[i+1:]...), nil
			}
		}
		return nil, fmt.Errorf("token %s in %s: %w", name, f.Path, ErrNoSuchToken)
	})
}

// update applies change to the file's tokens under the lock and writes the
// result.
func (f *TokenFile) update(change func([]TokenInfo) ([]TokenInfo, error)) error {
	return safefile.UpdateJSON(f.Path, "token file", f.List, change, func(tokens []TokenInfo) any {
		return tokenFile{Version: 1, Tokens: append([]TokenInfo{}, tokens...)}
	})
}

// TokenAuthenticator authenticates "Authorization: Bearer TOKEN" against
// a token file. It re-reads the file when the file changed (another inode,
// size or modification time), looking at most once per CheckEvery, so
// tokens created or revoked with `cloudd token` take effect without a
// restart. A missing or unreadable file refuses every token (the API is
// never open), and so does a file that does not parse: a broken file
// fails closed rather than keeping tokens that may have been revoked.
type TokenAuthenticator struct {
	path  string
	now   func() time.Time
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	checked time.Time
	stat    fs.FileInfo // of the file last read; nil when there was none
	entries []entry     // replaced, never modified in place
	loadErr error       // why entries is empty, if it is for a reason
}

// TokenOptions tune a TokenAuthenticator.
type TokenOptions struct {
	// CheckEvery is how often at most the file is looked at; 1s when 0.
	CheckEvery time.Duration
	// Now is the time source; time.Now when nil.
	Now func() time.Time
	// Logger receives reloads and load errors; discarded when nil.
	Logger *slog.Logger
}

// NewTokenAuthenticator reads path (which may not exist yet) and returns
// an authenticator on it. An empty path means no token file: every
// request is refused.
func NewTokenAuthenticator(path string, o TokenOptions) *TokenAuthenticator {
	t := &TokenAuthenticator{path: path, now: o.Now, every: o.CheckEvery, log: o.Logger}
	if t.now == nil {
		t.now = time.Now
	}
	if t.every <= 0 {
		t.every = time.Second
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	t.mu.Lock()
	t.reload()
	t.mu.Unlock()
	return t
}

// Count returns the number of tokens in force and, when it is 0 because
// of the file, why.
func (t *TokenAuthenticator) Count() (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.maybeReload()
	return len(t.entries), t.loadErr
}

// Authenticate implements Authenticator.
func (t *TokenAuthenticator) Authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Principal{}, ErrNoCredentials
	}
	scheme, token, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, fmt.Errorf("%w: Authorization scheme %q: want Bearer", ErrBadCredentials, scheme)
	}
	token = strings.TrimSpace(token)
	t.mu.Lock()
	t.maybeReload()
	entries := t.entries
	t.mu.Unlock()
	if len(entries) == 0 {
		// The reason (a file name, a parse error) goes to the log, not to
		// a caller who has not authenticated.
		return Principal{}, fmt.Errorf("%w: cloudd has no usable API tokens (its log says why)", ErrBadCredentials)
	}
	sum := sha256.Sum256([]byte(token))
	// Compare with every entry, in constant time each, and never stop
	// early: the time taken says nothing about which hash was close.
	match := -1
	for i := range entries {
		if subtle.ConstantTimeCompare(sum[:], entries[i].hash[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return Principal{}, fmt.Errorf("%w: unknown or revoked token", ErrBadCredentials)
	}
	return Principal{Name: entries[match].name, Role: entries[match].role}, nil
}

// maybeReload re-reads the file if CheckEvery has passed and the file
// changed. t.mu is held.
func (t *TokenAuthenticator) maybeReload() {
	now := t.now()
	if d := now.Sub(t.checked); d >= 0 && d < t.every {
		return
	}
	t.checked = now
	fi, err := os.Stat(t.path)
	if err == nil && safefile.Same(fi, t.stat) {
		return
	}
	if err != nil && t.stat == nil && t.loadErr != nil {
		return // still missing: said so already
	}
	t.reload()
}

// reload reads the file into entries. t.mu is held.
func (t *TokenAuthenticator) reload() {
	t.checked = t.now()
	if t.path == "" {
		t.entries, t.stat = nil, nil
		t.loadErr = errors.New("no token file configured (-tokens)")
		return
	}
	fi, err := os.Stat(t.path)
	var entries []entry
	if err == nil {
		_, entries, err = readTokenFile(t.path)
	} else {
		fi = nil
		err = fmt.Errorf("token file: %w", err)
	}
	had := len(t.entries)
	t.stat, t.entries, t.loadErr = fi, entries, err
	switch {
	case err != nil:
		t.log.Error("API tokens not loaded: every API request except /healthz is refused", "file", t.path, "err", err,
			"hint", "create a token with: cloudd token create -tokens "+t.path+" -name NAME -role operator")
	case len(entries) == 0:
		t.log.Warn("token file holds no tokens: every API request except /healthz is refused", "file", t.path,
			"hint", "create a token with: cloudd token create -tokens "+t.path+" -name NAME -role operator")
	default:
		t.log.Info("API tokens loaded", "file", t.path, "tokens", len(entries), "before", had)
	}
	if fi != nil && fi.Mode().Perm()&0o022 != 0 {
		// Whoever may write the file may add an operator token.
		t.log.Warn("token file is writable by others than its owner: anyone who can write it can grant themselves operator", "file", t.path, "mode", fi.Mode().Perm().String(), "hint", "chmod 600 "+t.path)
	}
}
