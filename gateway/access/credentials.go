package access

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/luling-edge/luling/gateway/command"
	"github.com/luling-edge/luling/internal/safefile"
	"github.com/luling-edge/luling/payload"
)

// Files in the store's directory.
const (
	StoreFile = "credentials.json"
	KeyFile   = "credentials.key"
	// SyncCommand is the command that replaces the credential set.
	SyncCommand = "credentials.sync"
)

// ErrStale means a sync carried an older version than the stored set.
var ErrStale = errors.New("credential set is older than the stored one")

// Reason says why a credential was granted or denied.
type Reason string

// Reasons.
const (
	ReasonOK              Reason = "ok"
	ReasonExit            Reason = "exit_request"
	ReasonUnknown         Reason = "unknown_credential"
	ReasonNotYetValid     Reason = "not_yet_valid"
	ReasonExpired         Reason = "expired"
	ReasonOutsideSchedule Reason = "outside_schedule"
	ReasonDoorNotAllowed  Reason = "door_not_allowed"
)

// Window is a weekly time window: on Days, from From until Until (minutes
// after local midnight). Until at or before From crosses midnight into the
// next day.
type Window struct {
	Days  []time.Weekday `json:"days"`
	From  int            `json:"from"`
	Until int            `json:"until"`
}

// Credential is one card as the cloud syncs it. Card is the card's
// canonical identity ("facility:number", wiegand.Card.ID).
type Credential struct {
	ID       string
	Card     string
	From     time.Time // zero: valid since ever
	Until    time.Time // zero: valid forever
	Schedule []Window  // empty: any time
	Doors    []string  // empty: every door
}

// stored is a credential at rest: the card only as its keyed hash.
type stored struct {
	ID       string    `json:"id"`
	Hash     string    `json:"hash"`
	From     time.Time `json:"from,omitzero"`
	Until    time.Time `json:"until,omitzero"`
	Schedule []Window  `json:"schedule,omitempty"`
	Doors    []string  `json:"doors,omitempty"`
}

type storeFile struct {
	V           int      `json:"v"`
	Version     int64    `json:"version"`
	Credentials []stored `json:"credentials"`
}

// Store holds the gateway's credential set, durably and versioned.
type Store struct {
	dir string
	key []byte
	loc *time.Location
	log *slog.Logger

	mu      sync.RWMutex
	version int64
	byHash  map[string]*stored
}

// StoreOptions configure OpenStore.
type StoreOptions struct {
	// Location is the time zone schedules are read in (time.Local when nil).
	Location *time.Location
	Logger   *slog.Logger
}

// OpenStore opens the store in dir, creating the directory and a fresh
// random key file when they do not exist.
func OpenStore(dir string, opts StoreOptions) (*Store, error) {
	if opts.Location == nil {
		opts.Location = time.Local
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("access: credential store %s: %w", dir, err)
	}
	s := &Store{dir: dir, loc: opts.Location, log: opts.Logger, byHash: map[string]*stored{}}
	keyPath := filepath.Join(dir, KeyFile)
	key, err := os.ReadFile(keyPath)
	fresh := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("access: credential key %s: %w", keyPath, err)
		}
		if err := safefile.Replace(keyPath, key, 0o600); err != nil {
			return nil, fmt.Errorf("access: credential key %s: %w", keyPath, err)
		}
		fresh = true
	case err != nil:
		return nil, fmt.Errorf("access: credential key %s: %w", keyPath, err)
	case len(key) != 32:
		return nil, fmt.Errorf("access: credential key %s: %d bytes: want 32", keyPath, len(key))
	}
	s.key = key
	path := filepath.Join(dir, StoreFile)
	body, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("access: credential store %s: %w", path, err)
	}
	if fresh {
		// The hashes were made with a key that is gone: they match nothing.
		s.log.Warn("credential key was missing; the stored set is void until the next sync", "file", path)
		return s, nil
	}
	var f storeFile
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, fmt.Errorf("access: credential store %s: %w", path, err)
	}
	if f.V != 1 {
		return nil, fmt.Errorf("access: credential store %s: format v%d: want 1", path, f.V)
	}
	s.version = f.Version
	for i := range f.Credentials {
		c := &f.Credentials[i]
		s.byHash[c.Hash] = c
	}
	return s, nil
}

// Version is the stored set's version (0 before the first sync).
func (s *Store) Version() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version
}

// Len is the number of stored credentials.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byHash)
}

// hash is the keyed hash of a card identity.
func (s *Store) hash(card string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(card))
	return hex.EncodeToString(m.Sum(nil))
}

// Mask is what events show of an unknown card: a short prefix of its
// keyed hash, so repeated attempts can be told apart without the number.
func (s *Store) Mask(card string) string { return "h:" + s.hash(card)[:12] }

// Sync replaces the set with creds at version. A version below the stored
// one is refused with ErrStale; the same version is accepted and changes
// nothing. The new set is on disk (fsync'd) before it is used.
func (s *Store) Sync(version int64, creds []Credential) (changed bool, err error) {
	path := filepath.Join(s.dir, StoreFile)
	s.mu.Lock()
	defer s.mu.Unlock()
	if version < s.version {
		return false, fmt.Errorf("access: credential store %s: version %d is below the stored %d: %w", path, version, s.version, ErrStale)
	}
	if version == s.version {
		return false, nil
	}
	f := storeFile{V: 1, Version: version, Credentials: make([]stored, 0, len(creds))}
	seen := make(map[string]string, len(creds))
	for i, c := range creds {
		if err := c.check(); err != nil {
			return false, fmt.Errorf("access: credential %d: %w", i, err)
		}
		h := s.hash(c.Card)
		if other, dup := seen[h]; dup {
			return false, fmt.Errorf("access: credential %d (%s): same card as %s", i, c.ID, other)
		}
		seen[h] = c.ID
		f.Credentials = append(f.Credentials, stored{ID: c.ID, Hash: h, From: c.From, Until: c.Until, Schedule: c.Schedule, Doors: c.Doors})
	}
	body, err := json.Marshal(&f)
	if err != nil {
		return false, fmt.Errorf("access: credential store %s: %w", path, err)
	}
	if err := safefile.Replace(path, body, 0o600); err != nil {
		return false, fmt.Errorf("access: credential store %s: %w", path, err)
	}
	s.version = version
	s.byHash = make(map[string]*stored, len(f.Credentials))
	for i := range f.Credentials {
		s.byHash[f.Credentials[i].Hash] = &f.Credentials[i]
	}
	return true, nil
}

func (c *Credential) check() error {
	switch {
	case c.ID == "" || len(c.ID) > 64:
		return fmt.Errorf("id %q: want 1..64 characters", c.ID)
	case c.Card == "" || len(c.Card) > 64:
		return fmt.Errorf("%s: card: want 1..64 characters (facility:number)", c.ID)
	case !c.From.IsZero() && !c.Until.IsZero() && !c.Until.After(c.From):
		return fmt.Errorf("%s: until %s is not after from %s", c.ID, c.Until.Format(time.RFC3339), c.From.Format(time.RFC3339))
	}
	for i, w := range c.Schedule {
		if len(w.Days) == 0 || w.From < 0 || w.From >= 1440 || w.Until < 0 || w.Until > 1440 {
			return fmt.Errorf("%s: schedule %d: want days and from/until within a day", c.ID, i)
		}
	}
	return nil
}

// Check decides whether card may open door at time at. It returns the
// credential's id ("" when unknown), whether it is granted, and why.
func (s *Store) Check(card, door string, at time.Time) (id string, ok bool, why Reason) {
	h := s.hash(card)
	s.mu.RLock()
	c := s.byHash[h]
	s.mu.RUnlock()
	if c == nil {
		return "", false, ReasonUnknown
	}
	switch {
	case !c.From.IsZero() && at.Before(c.From):
		return c.ID, false, ReasonNotYetValid
	case !c.Until.IsZero() && !at.Before(c.Until):
		return c.ID, false, ReasonExpired
	case len(c.Doors) > 0 && !contains(c.Doors, door):
		return c.ID, false, ReasonDoorNotAllowed
	case len(c.Schedule) > 0 && !inSchedule(c.Schedule, at.In(s.loc)):
		return c.ID, false, ReasonOutsideSchedule
	}
	return c.ID, true, ReasonOK
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func inSchedule(ws []Window, t time.Time) bool {
	min := t.Hour()*60 + t.Minute()
	day := t.Weekday()
	yesterday := (day + 6) % 7
	for _, w := range ws {
		for _, d := range w.Days {
			if w.Until > w.From {
				if d == day && min >= w.From && min < w.Until {
					return true
				}
				continue
			}
			// Crosses midnight: the evening of d and the morning after.
			if (d == day && min >= w.From) || (d == yesterday && min < w.Until) {
				return true
			}
		}
	}
	return false
}

// wireCredential is one entry of the credentials.sync argument.
type wireCredential struct {
	ID       string       `json:"id"`
	Card     string       `json:"card"`
	From     string       `json:"from,omitempty"`
	Until    string       `json:"until,omitempty"`
	Schedule []wireWindow `json:"schedule,omitempty"`
	Doors    []string     `json:"doors,omitempty"`
}

type wireWindow struct {
	Days  string `json:"days"`
	From  string `json:"from"`
	Until string `json:"until"`
}

var dayNames = map[string]time.Weekday{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}

// ParseCredentials reads the "credentials" argument of credentials.sync: a
// JSON array of {"id", "card", "from", "until", "schedule": [{"days":
// "mon-fri", "from": "07:00", "until": "19:00"}], "doors": [...]}. Errors
// name the entry and the key.
func ParseCredentials(text string) ([]Credential, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	var ws []wireCredential
	if err := dec.Decode(&ws); err != nil {
		return nil, fmt.Errorf("credentials: %v: want a JSON array of {id, card, from, until, schedule, doors}", err)
	}
	if dec.More() {
		return nil, errors.New("credentials: data after the JSON array")
	}
	out := make([]Credential, len(ws))
	for i, w := range ws {
		c := Credential{ID: w.ID, Card: strings.TrimSpace(w.Card), Doors: w.Doors}
		var err error
		if w.From != "" {
			if c.From, err = time.Parse(time.RFC3339, w.From); err != nil {
				return nil, fmt.Errorf("credentials[%d] (%s): from %q: want an RFC 3339 time", i, w.ID, w.From)
			}
		}
		if w.Until != "" {
			if c.Until, err = time.Parse(time.RFC3339, w.Until); err != nil {
				return nil, fmt.Errorf("credentials[%d] (%s): until %q: want an RFC 3339 time", i, w.ID, w.Until)
			}
		}
		for j, ww := range w.Schedule {
			win, err := parseWindow(ww)
			if err != nil {
				return nil, fmt.Errorf("credentials[%d] (%s): schedule[%d]: %w", i, w.ID, j, err)
			}
			c.Schedule = append(c.Schedule, win)
		}
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("credentials[%d]: %w", i, err)
		}
		out[i] = c
	}
	return out, nil
}

func parseWindow(w wireWindow) (Window, error) {
	var win Window
	for _, part := range strings.Split(w.Days, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		lo, hi, isRange := strings.Cut(part, "-")
		a, ok1 := dayNames[lo]
		b, ok2 := a, true
		if isRange {
			b, ok2 = dayNames[hi]
		}
		if !ok1 || !ok2 {
			return win, fmt.Errorf("days %q: want day names or ranges such as mon-fri,sun", w.Days)
		}
		for d := a; ; d = (d + 1) % 7 {
			win.Days = append(win.Days, d)
			if d == b {
				break
			}
		}
	}
	var err error
	if win.From, err = clock(w.From, false); err != nil {
		return win, fmt.Errorf("from %q: %w", w.From, err)
	}
	if win.Until, err = clock(w.Until, true); err != nil {
		return win, fmt.Errorf("until %q: %w", w.Until, err)
	}
	return win, nil
}

func clock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	max := 23
	if end {
		max = 24
	}
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || hh > max || mm < 0 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, errors.New("want HH:MM (00:00..23:59, or 24:00 as an end)")
	}
	return hh*60 + mm, nil
}

// Handler is the credentials.sync command handler for
// command.Options.Handlers. Arguments: "version" (integer ≥ 1) and
// "credentials" (a JSON array as text, see ParseCredentials). Result:
// {"version", "credentials" (count), "previous" (version before),
// "changed" (bool)}.
func (s *Store) Handler() command.Handler {
	return func(a *command.Args) (command.Action, error) {
		v := a.Value("version")
		text := a.String("credentials")
		if err := a.Err(); err != nil {
			return command.Action{}, err
		}
		if v.Type() != payload.TypeInt || v.Int() < 1 {
			return command.Action{}, fmt.Errorf("argument \"version\" is %v: want an integer of at least 1", v.Interface())
		}
		creds, err := ParseCredentials(text)
		if err != nil {
			return command.Action{}, err
		}
		version := v.Int()
		return command.Action{Run: func(context.Context) (map[string]any, error) {
			prev := s.Version()
			changed, err := s.Sync(version, creds)
			if err != nil {
				return map[string]any{"version": prev}, err
			}
			return map[string]any{"version": version, "credentials": s.Len(), "previous": prev, "changed": changed}, nil
		}}, nil
	}
}
