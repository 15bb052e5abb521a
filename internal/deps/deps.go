// Package deps pins the project's chosen modules in go.mod while the
// packages that use them are being written. It has no code.
package deps

import (
	_ "github.com/creack/pty"
	_ "github.com/eclipse/paho.mqtt.golang"
	_ "github.com/hashicorp/go-plugin"
	_ "github.com/influxdata/influxdb-client-go/v2"
	_ "github.com/mochi-mqtt/server/v2"
	_ "github.com/tarm/serial"
	_ "golang.org/x/sys/unix"
	_ "gopkg.in/yaml.v3"
	_ "periph.io/x/conn/v3/gpio"
	_ "periph.io/x/host/v3"
)
