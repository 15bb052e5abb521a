// Package uplink forwards the outbox's sealed messages to the cloud over
// MQTT contract v1 (topics gw/v1/{site}/{gateway}/…, QoS 1) with the Eclipse
// Paho client, and delivers the cloud's commands to the gateway.
//
// # Concepts
//
// Source is the outbox as the uplink sees it: Pending hands out sealed
// messages in sequence order, Ack records the ones the broker acknowledged.
// The uplink never deletes anything itself; a message counts as delivered
// only when its QoS 1 PUBACK arrived, and only then is it passed to Ack.
// A Source that also implements Delivery (the outbox) keeps PUBACKed
// messages until the cloud confirms them on the ack topic; the uplink then
// publishes requested ranges again and announces declared losses (see
// delivery.go and docs/design.md).
//
// A session is one MQTT connection. Each session starts with a fresh Paho
// client (clean session, no Paho auto-reconnect, no Paho resend store): the
// outbox is the only store of unacknowledged messages, so after a connection
// loss the next session simply replays from the oldest unacknowledged message
// (Pending with after = 0). Messages may therefore reach the broker twice;
// the per-gateway sequence number lets the cloud drop duplicates, and nothing
// is ever skipped.
//
// Every session does, in order: subscribe to gw/v1/{site}/{gateway}/cmd/# at
// QoS 1 (when OnCommand is set), publish the birth message (status, online,
// retained, QoS 1), then stream. The Last Will registered with each CONNECT
// is the same status topic with online=false, retained, so the broker
// announces a gateway that vanished without a DISCONNECT; its time ("t") is
// the time of that CONNECT. On shutdown the
// uplink publishes online=false itself and disconnects cleanly.
//
// The window bounds the publishes in flight (sent, not yet PUBACKed). The
// publisher fills the window from Pending without waiting for round trips; a
// collector waits for the PUBACKs in publish order and acknowledges runs of
// completed messages with one Ack call.
//
// No wait can hang: Paho completes every QoS 1 token of a clean-session client
// with an error when its connection is lost or closed; on top of that the
// collector drops a connection whose oldest publish saw no PUBACK within
// AckTimeout, on Linux the socket gives up on unacknowledged TCP data after
// AckTimeout (TCP_USER_TIMEOUT), and every wait after a session ended is
// bounded by CloseTimeout (a publish still unresolved then is treated as not
// acknowledged and replayed).
//
// Reconnects use jittered exponential backoff (250 ms doubling, the upper
// half random) capped at ReconnectMax; brokers are tried in the configured
// order on every attempt (failover). State changes are logged, not every
// attempt. A session that lasted at least ReconnectMax resets the backoff.
//
// If Source.Ack fails, the messages stay unacknowledged in the outbox and the
// session reads again from the oldest unacknowledged message at its next
// Pending call, so they are published again.
package uplink
