package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/luling-edge/luling/internal/safefile"
)

// UserInfo is one account of a user file: a login for the web platform
// (and, through a session, the JSON API). The password is kept as a bcrypt
// hash only.
type UserInfo struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Bcrypt  string    `json:"bcrypt"`
	Created time.Time `json:"created"`
}

type userFile struct {
	Version int        `json:"version"`
	Users   []UserInfo `json:"users"`
}

// user is a parsed UserInfo.
type user struct {
	role Role
	hash []byte
}

// Password limits: bcrypt reads at most 72 bytes, and a short password is
// guessed whatever the hash.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 72
)

// ErrNoSuchUser is returned by Remove and SetPassword for a name the file
// does not hold.
var ErrNoSuchUser = errors.New("no such user")

// ValidPassword says what is wrong with a password, if anything.
func ValidPassword(pw string) error {
	if len(pw) < MinPasswordLen || len(pw) > MaxPasswordLen {
		return fmt.Errorf("password of %d bytes: want %d to %d", len(pw), MinPasswordLen, MaxPasswordLen)
	}
	return nil
}

// parseUserFile decodes a user file; path names it in errors. User names
// follow the rules of token names (ValidTokenName).
func parseUserFile(path string, b []byte) ([]UserInfo, map[string]user, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var uf userFile
	if err := dec.Decode(&uf); err != nil {
		return nil, nil, fmt.Errorf("user file %s: %w (want {\"version\": 1, \"users\": [...]} as written by cloudd user add)", path, err)
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("user file %s: data after the JSON object", path)
	}
	if uf.Version != 1 {
		return nil, nil, fmt.Errorf("user file %s: version %d: want 1", path, uf.Version)
	}
	users := make(map[string]user, len(uf.Users))
	for i, u := range uf.Users {
		where := fmt.Sprintf("user file %s: users[%d]", path, i)
		if err := ValidTokenName(u.Name); err != nil {
			return nil, nil, fmt.Errorf("%s: user %w", where, err)
		}
		if _, dup := users[u.Name]; dup {
			return nil, nil, fmt.Errorf("%s: name %q appears twice", where, u.Name)
		}
		role, err := ParseRole(u.Role)
		if err != nil {
			return nil, nil, fmt.Errorf("%s (%s): %w", where, u.Name, err)
		}
		if _, err := bcrypt.Cost([]byte(u.Bcrypt)); err != nil {
			return nil, nil, fmt.Errorf("%s (%s): bcrypt: want a bcrypt hash as cloudd user add writes it: %w", where, u.Name, err)
		}
		users[u.Name] = user{role: role, hash: []byte(u.Bcrypt)}
	}
	return uf.Users, users, nil
}

// UserFile manages a file of accounts: what `cloudd user` does. Like
// TokenFile, changes are read-modify-write under PATH.lock and replace the
// file atomically with mode 0600.
type UserFile struct {
	Path string
	// Cost is the bcrypt cost of new hashes; bcrypt.DefaultCost when 0.
	Cost int
	// Now is the time source for Created; time.Now when nil.
	Now func() time.Time
}

// List returns the file's accounts. A missing file holds none.
func (f *UserFile) List() ([]UserInfo, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("user file: %w", err)
	}
	infos, _, err := parseUserFile(f.Path, b)
	return infos, err
}

func (f *UserFile) hash(name, password string) (string, error) {
	if err := ValidPassword(password); err != nil {
		return "", fmt.Errorf("user %s: %w", name, err)
	}
	cost := f.Cost
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("user %s: hash password: %w", name, err)
	}
	return string(h), nil
}

// Add creates the account name with role and password.
func (f *UserFile) Add(name string, role Role, password string) error {
	if err := ValidTokenName(name); err != nil {
		return fmt.Errorf("user %w", err)
	}
	if role == RoleNone {
		return fmt.Errorf("user %s: a role is required (viewer or operator)", name)
	}
	h, err := f.hash(name, password)
	if err != nil {
		return err
	}
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	return f.change(func(users []UserInfo) ([]UserInfo, error) {
		if userIndex(users, name) >= 0 {
			return nil, fmt.Errorf("user %s exists in %s: remove it or change its password", name, f.Path)
		}
		return append(users, UserInfo{Name: name, Role: role.String(), Bcrypt: h, Created: now().UTC().Truncate(time.Second)}), nil
	})
}

// SetPassword replaces the password of name. Sessions opened with the old
// password stay open until they expire or the user logs out.
func (f *UserFile) SetPassword(name, password string) error {
	h, err := f.hash(name, password)
	if err != nil {
		return err
	}
	return f.change(func(users []UserInfo) ([]UserInfo, error) {
		i := userIndex(users, name)
		if i < 0 {
			return nil, fmt.Errorf("user %s in %s: %w", name, f.Path, ErrNoSuchUser)
		}
		users[i].Bcrypt = h
		return users, nil
	})
}

// Remove deletes the account name. Its open sessions end at their next
// request (Sessions re-reads the file).
func (f *UserFile) Remove(name string) error {
	return f.change(func(users []UserInfo) ([]UserInfo, error) {
		i := userIndex(users, name)
		if i < 0 {
			return nil, fmt.Errorf("user %s in %s: %w", name, f.Path, ErrNoSuchUser)
		}
		return append(users[:i:i], users[i+1:]...), nil
	})
}

func userIndex(users []UserInfo, name string) int {
	for i := range users {
		if users[i].Name == name {
			return i
		}
	}
	return -1
}

// change applies fn to the accounts under the file's lock and writes the
// result.
func (f *UserFile) change(fn func([]UserInfo) ([]UserInfo, error)) error {
	return safefile.UpdateJSON(f.Path, "user file", f.List, fn, func(users []UserInfo) any {
		return userFile{Version: 1, Users: append([]UserInfo{}, users...)}
	})
}
