// Command zone-guidance is a Luling rule plugin that drives each parking
// zone's guidance sign from the zone's bay sensors (see package guidance).
// The gateway starts it; run by hand it only prints a message.
package main

import (
	"github.com/luling-edge/luling/plugins/examples/zone-guidance/guidance"
	"github.com/luling-edge/luling/plugins/sdk"
)

func main() { sdk.ServeRule(guidance.New()) }
