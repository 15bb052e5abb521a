// Package config loads and checks a gateway's site config: one YAML file per
// gateway that names the site and gateway, the MQTT uplink, the durable
// outbox, the serial buses and the devices on them.
//
// Installers edit the file on site, so the loader is strict and reports
// every mistake at once, each with the file, line and column, the key's
// path, what was wrong and a hint: unknown keys (with "did you mean" when a
// known key is close), wrong types, missing required keys, bad durations and
// sizes, values out of range, duplicate device ids and bus units, devices on
// undefined buses, two buses on one port, unknown drivers and profiles. The
// result is an *Errors listing them sorted by line.
//
// A valid file becomes a *Config with typed values (time.Duration, byte
// sizes as int64) and every default filled in, so the gateway reads no
// defaults of its own. A device entry with a repeat block stands for a range
// of similar devices: it is expanded at load time, with {n}, {n:03} and
// {n+K}/{n-K} placeholders replaced in the id, the unit and the tag values;
// every expanded device keeps the line of the entry it came from.
//
// The package knows no driver and no profile by itself: the caller passes
// the known names in (KnownDrivers, KnownProfiles) and, when needed, the
// bus rules of its drivers (DriverRules). Passwords are held as a Secret,
// which never prints its value.
//
// The rules: list (local rules, see docs/rules.md) is carried as Rule
// entries: the loader checks that each is a mapping with a valid, unique
// name and keeps its YAML node, which package gateway/rules decodes and
// compiles with the same file and line numbers.
//
// docs/config.md describes every key, its type and its default.
package config
