package main

import (
	"github.com/luling-edge/luling/drivers/all"
	"github.com/luling-edge/luling/gateway"
	"github.com/luling-edge/luling/plugins/host"
)

// gatewayctl always links the plugin host: `read` runs plugin devices and
// `validate` compiles plugin rules the way gatewayd-full does.
func init() {
	all.EnablePlugins(host.Factory)
	gateway.EnablePluginRules(host.RuleFactory)
}
