package config

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/luling-edge/luling/internal/yamlx"
	"gopkg.in/yaml.v3"
)

// Placeholders refuses a config that still holds what the packaged example
// (/usr/share/luling/gateway.yaml.example) or gatewayctl init leaves for
// the installer to fill in: such a config parses, but would run as
// nobody's gateway against a broker that does not exist. data is the
// file's text (nil: read cfg.File) and places each mistake at its line;
// opts are the ones the config was loaded with (with SkipFileChecks an
// unread password_file is not a mistake). The error is an *Errors.
func Placeholders(cfg *Config, data []byte, opts ...Option) error {
	o := &options{rules: map[string]DriverRule{}}
	for _, opt := range opts {
		opt(o)
	}
	if data == nil {
		data, _ = os.ReadFile(cfg.File) // without the text, mistakes sit at line 1
	}
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // Load has parsed it already
	var list []Error
	at := func(where, path, hint, format string, args ...any) {
		e := Error{File: cfg.File, Line: 1, Path: path, Msg: fmt.Sprintf(format, args...), Hint: hint}
		if n := locate(&root, where); n != nil {
			e.Line, e.Col = n.Line, n.Column
		}
		list = append(list, e)
	}
	bad := func(path, hint, format string, args ...any) { at(path, path, hint, format, args...) }
	if strings.Contains(cfg.Site, "change-me") {
		bad("site", "use the site name agreed with the platform, or install a provisioning bundle", "%q is the example's placeholder", cfg.Site)
	}
	if strings.Contains(cfg.Gateway, "change-me") {
		bad("gateway", "", "%q is the example's placeholder", cfg.Gateway)
	}
	for i, b := range cfg.Uplink.Brokers {
		u, err := url.Parse(b)
		if err != nil {
			continue // the loader reports it
		}
		if isExampleHost(u.Hostname()) {
			at("uplink.brokers["+strconv.Itoa(i)+"]", "uplink.brokers", "use the platform's, e.g. ssl://mqtt.your-city.org:8883", "%s is the example's placeholder broker", b)
		}
	}
	if strings.Contains(cfg.Uplink.Username, "change-me") {
		bad("uplink.username", "{site}/{gateway}", "%q is the example's placeholder", cfg.Uplink.Username)
	}
	if !o.skipFiles && cfg.Uplink.PasswordFile != "" && cfg.Uplink.Password == "" {
		bad("uplink.password_file", "write the gateway's password into it, or use a client certificate", "%s is empty", cfg.Uplink.PasswordFile)
	}
	if len(list) == 0 {
		return nil
	}
	return &Errors{List: yamlx.Sorted(list)}
}

// isExampleHost reports the names reserved for examples (RFC 2606, RFC 6761).
func isExampleHost(h string) bool {
	h = strings.ToLower(h)
	for _, d := range []string{"example", "example.net", "example.com", "example.org"} {
		if h == d || strings.HasSuffix(h, "."+d) {
			return true
		}
	}
	return false
}

// locate finds the value node at a path such as "uplink.brokers[0]";
// nil when the file does not spell it out (a merge key, a repeat).
func locate(root *yaml.Node, path string) *yaml.Node {
	n := yamlx.Resolve(root)
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = yamlx.Resolve(n.Content[0])
	}
	for _, part := range strings.Split(path, ".") {
		key, idx, hasIdx := strings.Cut(part, "[")
		n = child(n, key)
		if hasIdx {
			i, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			if n == nil || n.Kind != yaml.SequenceNode || err != nil || i >= len(n.Content) {
				return nil
			}
			n = yamlx.Resolve(n.Content[i])
		}
		if n == nil {
			return nil
		}
	}
	return n
}

func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return yamlx.Resolve(n.Content[i+1])
		}
	}
	return nil
}
