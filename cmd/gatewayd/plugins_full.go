//go:build luling_full

package main

import (
	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/gateway"
	"github.com/luling-edge/luling/plugins/host"
)

// pluginsBuilt: this is gatewayd-full, with the plugin host.
const pluginsBuilt = true

func init() {
	all.EnablePlugins(host.Factory)
	gateway.EnablePluginRules(host.RuleFactory)
}
