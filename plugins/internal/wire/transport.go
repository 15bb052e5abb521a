package wire

import "google.golang.org/grpc"

// Transport tuning for the local connection between the gateway and a
// plugin process. A plugin call is a small request and a small reply over
// a Unix socket, so what costs is per-call work, not bandwidth:
//
//   - A fixed flow-control window (InitialWindowSize and
//     InitialConnWindowSize set) turns off gRPC's bandwidth-delay probing,
//     which otherwise sends a PING and waits for its ack alongside the
//     data frames of calls.
//   - A shared write buffer returns the transport's write buffer to a pool
//     between writes instead of keeping 32 KiB per connection.
//   - Stream workers on the serving side handle calls on goroutines that
//     stay alive instead of starting one per call; when all are busy (a
//     slow Poll), a call still gets its own goroutine, so a hung call
//     blocks nothing.
//
// window is large enough for the largest message either side sends (a
// Poll reply of 64 records of 64 fields) and costs no memory until used.
const window = 1 << 20

// streamWorkers is the number of long-lived call goroutines of a server.
const streamWorkers = 2

// DialOptions are the gRPC options for connections to the other side.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(window),
		grpc.WithInitialConnWindowSize(window),
		grpc.WithSharedWriteBuffer(true),
	}
}

// ServerOptions are the gRPC options for servers of either side.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(window),
		grpc.InitialConnWindowSize(window),
		grpc.SharedWriteBuffer(true),
		grpc.NumStreamWorkers(streamWorkers),
	}
}
