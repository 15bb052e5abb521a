package config

import (
	"sort"

	"github.com/luling-edge/luling/internal/schema"
)

// Option changes what Parse and Load accept.
type Option func(*options)

type options struct {
	drivers    *names // nil: any driver name is accepted
	profiles   *names // nil: any profile name is accepted
	rules      map[string]DriverRule
	skipFiles  bool
	baseDir    string
	baseDirSet bool
	profilesIn func(dir string) ([]string, error)
}

// DriverRule is what the loader checks for the devices of one driver: what
// the driver says of itself (drivers.Info), handed to the loader by the
// build that links the drivers (drivers/all).
type DriverRule struct {
	Bus     bool // a device must name a bus, and a unit on it
	UnitMin int  // accepted unit range for devices on a bus
	UnitMax int
	Profile bool // a device must name a profile
	// CardReader says the driver's devices read cards, so that a door
	// may list them under readers:.
	CardReader bool
	// Options are the keys of a device's options:, checked with their
	// places and "did you mean"; nil leaves the options unchecked.
	Options schema.Schema
}

// Catalog is what KnownDrivers and KnownProfiles take: names (which also
// feed the "did you mean" hints), or functions that report whether a name
// is known (drivers.Lookup wrapped, a profile set's lookup).
type Catalog interface {
	string | func(string) bool
}

// names is a set of known names: listed ones and lookup functions.
type names struct {
	set   map[string]bool
	funcs []func(string) bool
}

func addNames[T Catalog](n *names, known []T) *names {
	if n == nil {
		n = &names{set: map[string]bool{}}
	}
	for _, k := range known {
		switch v := any(k).(type) {
		case string:
			n.set[v] = true
		case func(string) bool:
			n.funcs = append(n.funcs, v)
		}
	}
	return n
}

// has reports whether name is known. A nil set knows every name.
func (n *names) has(name string) bool {
	if n == nil || n.set[name] {
		return true
	}
	for _, f := range n.funcs {
		if f != nil && f(name) {
			return true
		}
	}
	return false
}

// list returns the listed names, sorted, for hints.
func (n *names) list() []string {
	if n == nil {
		return nil
	}
	return sortedKeys(n.set)
}

// KnownDrivers restricts the driver key to the given names, or to the
// names the given functions accept. Without it any driver name is accepted.
func KnownDrivers[T Catalog](known ...T) Option {
	return func(o *options) { o.drivers = addNames(o.drivers, known) }
}

// KnownProfiles restricts the profile key to the given names (or those the
// given functions accept) and to the profiles in profiles_dir (see
// ProfilesInDir). Without it any profile name is accepted.
func KnownProfiles[T Catalog](known ...T) Option {
	return func(o *options) { o.profiles = addNames(o.profiles, known) }
}

// ProfilesInDir sets how the names of the profiles in profiles_dir are
// found; an error is reported at the profiles_dir key. Without it they are
// the base names of the *.yaml and *.yml files there.
func ProfilesInDir(list func(dir string) ([]string, error)) Option {
	return func(o *options) { o.profilesIn = list }
}

// DriverRules adds rules for drivers, replacing earlier rules of the same
// name. Without rules for a driver, its devices get only the checks every
// device gets.
func DriverRules(rules map[string]DriverRule) Option {
	return func(o *options) {
		for k, v := range rules {
			o.rules[k] = v
		}
	}
}

// SkipFileChecks skips the checks that files named by the config exist
// (TLS certificates, password_file, profiles_dir) and the reading of
// password_file: for validating a config away from its gateway.
func SkipFileChecks() Option {
	return func(o *options) { o.skipFiles = true }
}

// BaseDir sets the folder that relative paths in the file are resolved
// against. Load uses the file's folder; Parse uses the folder of its name.
func BaseDir(dir string) Option {
	return func(o *options) { o.baseDir, o.baseDirSet = dir, true }
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
