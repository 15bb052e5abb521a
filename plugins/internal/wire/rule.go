package wire

import (
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/luling-edge/luling/plugins/proto"
)

// RulePluginName is the name under which a plugin binary serves a rule.
const RulePluginName = "rule"

// RuleVersions lists the protocol versions that have rule plugins.
var RuleVersions = []int{ProtocolV2}

// RulePlugin binds the Rule service to go-plugin; the host gets a
// *RuleClient from Dispense.
type RulePlugin = grpcPlugin[pb.RuleServer, *RuleClient, ruleBinding]

// RuleClient is the host's view of a running rule plugin.
type RuleClient struct {
	Rule   pb.RuleClient
	Broker *plugin.GRPCBroker
}

// RulePluginSets maps every protocol version with rules to the plugin set p.
func RulePluginSets(p *RulePlugin) map[int]plugin.PluginSet {
	return pluginSets(RuleVersions, RulePluginName, p)
}

type ruleBinding struct{}

func (ruleBinding) kind() string { return "rule" }
func (ruleBinding) register(s grpc.ServiceRegistrar, impl pb.RuleServer) {
	pb.RegisterRuleServer(s, impl)
}
func (ruleBinding) client(c *grpc.ClientConn, broker *plugin.GRPCBroker) *RuleClient {
	return &RuleClient{Rule: pb.NewRuleClient(c), Broker: broker}
}
