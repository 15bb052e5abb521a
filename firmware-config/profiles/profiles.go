// Package profiles embeds the Modbus register-map profiles that ship with
// the gateway. Each YAML file describes one device model: the register
// blocks the modbus driver reads in one transaction each, and how their
// registers become the fields of a record (see README.md in this folder for
// the format). The modbus driver loads them with modbus.LoadProfiles(FS);
// a site may add or override profiles from a directory.
package profiles

import "embed"

// FS holds every *.yaml profile of this folder.
//
//go:embed *.yaml
var FS embed.FS
