package config

import (
	"gopkg.in/yaml.v3"

	"github.com/luling-edge/luling/internal/yamlx"
)

// decoder walks the config's YAML node tree (yamlx), collecting every
// error with its position, with what the loader was told (options).
type decoder struct {
	*yamlx.Decoder
	opts *options
}

func (d *decoder) size(n *yaml.Node, path string, lo, hi int64) (int64, bool) {
	n = yamlx.Resolve(n)
	const hint = "bytes, or a size such as 512KiB, 64MiB or 1GB"
	if n == nil || n.Kind != yaml.ScalarNode || (n.Tag != "!!str" && n.Tag != "!!int") {
		d.Errorf(n, path, hint, "expected a size, got %s", yamlx.Describe(n))
		return 0, false
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		d.Errorf(n, path, hint, "bad size %q: %v", n.Value, err)
		return 0, false
	}
	if v < lo || v > hi {
		d.Errorf(n, path, "", "%s is out of range %s..%s", FormatSize(v), FormatSize(lo), FormatSize(hi))
		return 0, false
	}
	return v, true
}
