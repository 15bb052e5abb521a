// Command guidance-display is a Luling device plugin for parking guidance
// displays (see package display for the protocol). The gateway starts it;
// run by hand it only prints a message.
package main

import (
	"github.com/luling-edge/luling/plugins/examples/guidance-display/display"
	"github.com/luling-edge/luling/plugins/sdk"
)

func main() { sdk.Serve(display.New()) }
