// Package proto is the gRPC protocol between the gateway and its device
// plugins: the Device service a plugin serves, and the Bus and Log services
// the gateway serves back to the plugin over go-plugin's broker. The code is
// generated from device.proto and committed; plugin authors use the
// plugins/sdk package instead of this one.
//
// Regenerate after editing device.proto (needs protoc, protoc-gen-go and
// protoc-gen-go-grpc on PATH; see docs/plugins.md):
//
//	go generate ./plugins/proto
package proto

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative device.proto
