package wire

import (
	"context"
	"errors"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/luling-edge/luling/plugins/proto"
)

// RulePluginName is the name under which a plugin binary serves a rule.
const RulePluginName = "rule"

// RuleVersions lists the protocol versions that have rule plugins.
var RuleVersions = []int{ProtocolV2}

// RulePlugin binds the Rule service to go-plugin. The plugin side sets
// Impl; the host side leaves it nil and gets a *RuleClient from Dispense.
type RulePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl func(broker *plugin.GRPCBroker) pb.RuleServer
}

// RuleClient is the host's view of a running rule plugin.
type RuleClient struct {
	Rule   pb.RuleClient
	Broker *plugin.GRPCBroker
}

// GRPCServer registers the plugin's Rule service.
func (p *RulePlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("rule plugin: no server implementation")
	}
	pb.RegisterRuleServer(s, p.Impl(broker))
	return nil
}

// GRPCClient returns a *RuleClient for the host.
func (p *RulePlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &RuleClient{Rule: pb.NewRuleClient(c), Broker: broker}, nil
}

// RulePluginSets maps every protocol version with rules to the plugin set p.
func RulePluginSets(p *RulePlugin) map[int]plugin.PluginSet {
	m := make(map[int]plugin.PluginSet, len(RuleVersions))
	for _, v := range RuleVersions {
		m[v] = plugin.PluginSet{RulePluginName: p}
	}
	return m
}
