package main

import (
	"errors"
	"fmt"

	"github.com/luling-edge/luling/firmware-config/config"
)

// placeholders refuses a config that still holds what the packaged example
// leaves for the installer to fill in (config.Placeholders says what).
// gatewayd -check (the unit's ExecStartPre) and every reload go through
// it, so the service does not start on the unedited example. Each mistake
// reads PATH: key: message, one per line.
func placeholders(path string, cfg *config.Config) error {
	err := config.Placeholders(cfg, nil)
	var list *config.Errors
	if !errors.As(err, &list) {
		return err
	}
	errs := make([]error, len(list.List))
	for i, e := range list.List {
		msg := e.Msg
		if e.Hint != "" {
			msg += " (" + e.Hint + ")"
		}
		errs[i] = fmt.Errorf("%s: %s: %s", path, e.Path, msg)
	}
	return errors.Join(errs...)
}
