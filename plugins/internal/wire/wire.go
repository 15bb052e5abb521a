// Package wire holds what both ends of the plugin protocol share: the
// go-plugin handshake and protocol versions, the go-plugin Plugin that binds
// the generated gRPC code, conversions between payload records and their
// protobuf form, declarative frame-length rules and error kinds.
package wire

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/luling-edge/luling/drivers"
	"github.com/luling-edge/luling/payload"
	pb "github.com/luling-edge/luling/plugins/proto"
)

// PluginName is the name under which a plugin binary serves its device.
const PluginName = "device"

// Protocol versions. Version 1 has Describe, Configure and Poll; version 2
// adds TakeEvents and Write.
const (
	ProtocolV1     = 1
	ProtocolV2     = 2
	ProtocolLatest = ProtocolV2
)

// Versions lists the protocol versions this code speaks, oldest first.
var Versions = []int{ProtocolV1, ProtocolV2}

// Handshake is the go-plugin handshake. The magic cookie only stops a user
// from running a plugin binary by hand; it is no security measure.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolLatest,
	MagicCookieKey:   "LULING_DEVICE_PLUGIN",
	MagicCookieValue: "5b0c6a1e-device-plugin",
}

// grpcPlugin binds one gRPC service of a plugin to go-plugin: S is the
// service's server, C the host's view of it, B what tells the services
// apart. The plugin side sets Impl; the host side leaves it nil and gets a
// C from Dispense.
type grpcPlugin[S, C any, B binding[S, C]] struct {
	plugin.NetRPCUnsupportedPlugin
	Impl func(broker *plugin.GRPCBroker) S
}

// binding is what differs between the plugin services.
type binding[S, C any] interface {
	kind() string // "device", "rule"
	register(s grpc.ServiceRegistrar, impl S)
	client(c *grpc.ClientConn, broker *plugin.GRPCBroker) C
}

// GRPCServer registers the plugin's service.
func (p *grpcPlugin[S, C, B]) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	var b B
	if p.Impl == nil {
		return fmt.Errorf("%s plugin: no server implementation", b.kind())
	}
	b.register(s, p.Impl(broker))
	return nil
}

// GRPCClient returns the host's view of the plugin's service.
func (p *grpcPlugin[S, C, B]) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	var b B
	return b.client(c, broker), nil
}

// pluginSets maps each of versions to a plugin set that serves p as name.
func pluginSets(versions []int, name string, p plugin.Plugin) map[int]plugin.PluginSet {
	m := make(map[int]plugin.PluginSet, len(versions))
	for _, v := range versions {
		m[v] = plugin.PluginSet{name: p}
	}
	return m
}

// DevicePlugin binds the Device service to go-plugin; the host gets a
// *Client from Dispense.
type DevicePlugin = grpcPlugin[pb.DeviceServer, *Client, deviceBinding]

// Client is the host's view of a running plugin.
type Client struct {
	Device pb.DeviceClient
	Broker *plugin.GRPCBroker
}

type deviceBinding struct{}

func (deviceBinding) kind() string { return "device" }
func (deviceBinding) register(s grpc.ServiceRegistrar, impl pb.DeviceServer) {
	pb.RegisterDeviceServer(s, impl)
}
func (deviceBinding) client(c *grpc.ClientConn, broker *plugin.GRPCBroker) *Client {
	return &Client{Device: pb.NewDeviceClient(c), Broker: broker}
}

// PluginSets maps every supported protocol version to the plugin set p.
func PluginSets(p *DevicePlugin) map[int]plugin.PluginSet {
	return pluginSets(Versions, PluginName, p)
}

// ValueToProto converts a value.
func ValueToProto(v payload.Value) *pb.Value {
	switch v.Type() {
	case payload.TypeFloat:
		return &pb.Value{V: &pb.Value_Float{Float: v.Float()}}
	case payload.TypeInt:
		return &pb.Value{V: &pb.Value_Int{Int: v.Int()}}
	case payload.TypeBool:
		return &pb.Value{V: &pb.Value_Bool{Bool: v.Bool()}}
	case payload.TypeString:
		return &pb.Value{V: &pb.Value_String_{String_: v.Str()}}
	}
	return &pb.Value{}
}

// ValueFromProto converts a value; it refuses an empty value and NaN or
// infinite floats.
func ValueFromProto(v *pb.Value) (payload.Value, error) {
	pv := valueFromProto(v)
	return pv, checkValue(pv)
}

// valueFromProto converts a value without checking it; a value with no
// type becomes the zero Value.
func valueFromProto(v *pb.Value) payload.Value {
	switch x := v.GetV().(type) {
	case *pb.Value_Float:
		return payload.Float(x.Float)
	case *pb.Value_Int:
		return payload.Int(x.Int)
	case *pb.Value_Bool:
		return payload.Bool(x.Bool)
	case *pb.Value_String_:
		return payload.String(x.String_)
	}
	return payload.Value{}
}

// RecordToProto converts a record.
func RecordToProto(r *payload.Record) *pb.Record {
	out := &pb.Record{Measurement: r.Measurement, Tags: r.Tags}
	if len(r.Fields) > 0 {
		out.Fields = make(map[string]*pb.Value, len(r.Fields))
		for k, v := range r.Fields {
			out.Fields[k] = ValueToProto(v)
		}
	}
	if !r.Time.IsZero() {
		out.TimeUnixNano = r.Time.UnixNano()
	}
	return out
}

// CheckUTF8 reports a tag or string field that is not valid UTF-8, which
// the protocol cannot carry.
func CheckUTF8(r *payload.Record) error {
	if !utf8.ValidString(r.Measurement) {
		return fmt.Errorf("measurement %q is not valid UTF-8", r.Measurement)
	}
	for k, v := range r.Tags {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%s: tag %q is not valid UTF-8", r.Measurement, k)
		}
	}
	for k, v := range r.Fields {
		if !utf8.ValidString(k) || (v.Type() == payload.TypeString && !utf8.ValidString(v.Str())) {
			return fmt.Errorf("%s: field %q is not valid UTF-8", r.Measurement, k)
		}
	}
	return nil
}

// RecordsToProto converts records.
func RecordsToProto(rs []payload.Record) []*pb.Record {
	out := make([]*pb.Record, len(rs))
	for i := range rs {
		out[i] = RecordToProto(&rs[i])
	}
	return out
}

// RecordFromProto converts a record that came from the other side and
// checks it with CheckRecord. The record takes over r's tag map (a message
// decoded for this call, not used again), which saves a copy per record.
func RecordFromProto(r *pb.Record) (payload.Record, error) {
	out := payload.Record{Measurement: r.GetMeasurement()}
	if len(r.GetTags()) > 0 {
		out.Tags = r.Tags // the decoded message's own map: taken over, not copied
	}
	if len(r.GetFields()) > 0 {
		out.Fields = make(map[string]payload.Value, len(r.Fields))
		for k, v := range r.Fields {
			out.Fields[k] = valueFromProto(v)
		}
	}
	if r.GetTimeUnixNano() != 0 {
		out.Time = time.Unix(0, r.TimeUnixNano).UTC()
	}
	if err := CheckRecord(&out); err != nil {
		return payload.Record{}, err
	}
	return out, nil
}

// ErrorToProto turns an error into its wire form; nil stays nil.
func ErrorToProto(err error) *pb.Error {
	if err == nil {
		return nil
	}
	kind := pb.Error_KIND_OTHER
	switch {
	case errors.Is(err, drivers.ErrTimeout):
		kind = pb.Error_KIND_TIMEOUT
	case errors.Is(err, drivers.ErrBusDown):
		kind = pb.Error_KIND_BUS_DOWN
	case errors.Is(err, ErrInvalid):
		kind = pb.Error_KIND_INVALID
	}
	return &pb.Error{Kind: kind, Message: err.Error()}
}

// ErrInvalid marks bad configuration, an unknown point or a value out of
// range: errors that retrying does not cure.
var ErrInvalid = errors.New("invalid")

// Remote is an error reported by the other side. It unwraps to the sentinel
// its kind stands for, so errors.Is(err, drivers.ErrTimeout) works across the
// process boundary.
type Remote struct {
	Kind    pb.Error_Kind
	Message string
}

func (e *Remote) Error() string { return e.Message }

// Unwrap returns the sentinel for the error's kind.
func (e *Remote) Unwrap() error {
	switch e.Kind {
	case pb.Error_KIND_TIMEOUT:
		return drivers.ErrTimeout
	case pb.Error_KIND_BUS_DOWN:
		return drivers.ErrBusDown
	case pb.Error_KIND_INVALID:
		return ErrInvalid
	}
	return nil
}

// ErrorFromProto turns a wire error back into an error; nil stays nil.
func ErrorFromProto(e *pb.Error) error {
	if e == nil {
		return nil
	}
	msg := e.Message
	if msg == "" {
		msg = "unspecified error"
	}
	return &Remote{Kind: e.Kind, Message: msg}
}

// validName is payload.ValidName without a regular expression (a plugin's
// records are checked name by name at every poll):
// ^[A-Za-z_][A-Za-z0-9_.-]{0,127}$.
func validName(s string) bool {
	if len(s) == 0 || len(s) > payload.MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}
