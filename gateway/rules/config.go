package rules

import (
	"gopkg.in/yaml.v3"

	"github.com/luling-edge/luling/firmware-config/config"
)

// FromConfig decodes the rules: list of a loaded gateway config. Errors
// carry the config file's name and lines.
func FromConfig(cfg *config.Config) ([]Def, error) {
	nodes := make([]*yaml.Node, len(cfg.Rules))
	for i, r := range cfg.Rules {
		nodes[i] = r.Node
	}
	return DecodeNodes(cfg.File, nodes)
}
