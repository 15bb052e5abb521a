// Package yamlx decodes YAML with positions: every mistake is reported as
// FILE:LINE:COL: key: what (hint), and all mistakes of a file are collected
// at once instead of stopping at the first.
//
// It is the one YAML layer of the project: the gateway config loader, the
// rules, the register-map profiles and the drivers' option schemas use it.
// A Decoder walks gopkg.in/yaml.v3 nodes with typed getters (Str, Int,
// Number, Bool, OneOf, Duration); Map checks a mapping's keys against the
// known ones and suggests the closest ("did you mean poll?", from package
// internal/suggest, which the plugin SDK's JSON config shares); Check
// checks a mapping against a schema.Schema, the self-description a driver
// gives of its options.
//
// The package is a leaf: of the project it imports only internal/schema
// and internal/suggest.
package yamlx
