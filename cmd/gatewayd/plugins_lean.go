//go:build !luling_full

package main

// pluginsBuilt: the default gatewayd leaves the plugin host (go-plugin,
// gRPC, protobuf: about 5.5 MB of the linux/arm binary) out, and hands a
// config that uses plugins to gatewayd-full (full.go).
const pluginsBuilt = false
