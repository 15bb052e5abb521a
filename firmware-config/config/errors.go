package config

import "github.com/luling-edge/luling/internal/yamlx"

// Error is one mistake in a config file, at the place where it was found.
// It formats as FILE:LINE:COL: path: message (hint).
type Error = yamlx.Error

// Errors is every mistake found in one config file, sorted by position.
// Parse and Load return it (as *Errors) when the file is not valid.
type Errors = yamlx.Errors
