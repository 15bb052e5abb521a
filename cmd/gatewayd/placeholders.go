package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/luling-edge/luling/firmware-config/config"
)

// placeholders refuses a config that still holds what the packaged example
// (/usr/share/luling/gateway.yaml.example) leaves for the installer to
// fill in: such a config parses, but would run as nobody's gateway against
// a broker that does not exist. gatewayd -check (the unit's ExecStartPre)
// and every reload go through it, so the service does not start on the
// unedited example.
func placeholders(path string, cfg *config.Config) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", path, key, fmt.Sprintf(format, args...)))
	}
	if strings.Contains(cfg.Site, "change-me") {
		bad("site", "%q is the example's placeholder (use the site name agreed with the platform, or install a provisioning bundle)", cfg.Site)
	}
	if strings.Contains(cfg.Gateway, "change-me") {
		bad("gateway", "%q is the example's placeholder", cfg.Gateway)
	}
	for _, b := range cfg.Uplink.Brokers {
		u, err := url.Parse(b)
		if err != nil {
			continue // the loader reports it
		}
		if h := strings.ToLower(u.Hostname()); h == "example" || strings.HasSuffix(h, ".example") ||
			h == "example.net" || h == "example.com" || h == "example.org" ||
			strings.HasSuffix(h, ".example.net") || strings.HasSuffix(h, ".example.com") || strings.HasSuffix(h, ".example.org") {
			bad("uplink.brokers", "%s is the example's placeholder broker (use the platform's, e.g. ssl://mqtt.your-city.org:8883)", b)
		}
	}
	if strings.Contains(cfg.Uplink.Username, "change-me") {
		bad("uplink.username", "%q is the example's placeholder ({site}/{gateway})", cfg.Uplink.Username)
	}
	if cfg.Uplink.PasswordFile != "" && cfg.Uplink.Password == "" {
		bad("uplink.password_file", "%s is empty (write the gateway's password into it, or use a client certificate)", cfg.Uplink.PasswordFile)
	}
	return errors.Join(errs...)
}
