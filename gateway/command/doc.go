// Package command runs commands on the gateway: the cloud's, which arrive
// over MQTT on gw/v1/{site}/{gateway}/cmd/{id} and are answered on
// …/cmd-reply/{id}, and local callers' (the rules engine).
//
// # Concepts
//
// A Command (schema v1, docs/commands.md) has an id, a name, arguments, the
// time the cloud issued it and the time it expires. payload.DecodeCommand checks it
// strictly: unknown keys, a wrong type, a missing field, an id that differs
// from the topic's, or a lifetime over payload.MaxCommandLifetime are refused with an error
// that names the field and what was expected. Every command gets exactly one
// Reply with a status: ok, error, expired, duplicate or unknown.
//
// A Handler checks a command's arguments (through Args, which also refuses
// arguments nobody asked for) and returns an Action; only a command whose
// arguments are right runs. Built in: ping, device.write and relay.pulse
// (through drivers.Writer), config.reload (through a hook that validates
// before it applies, so a bad configuration is refused with its errors
// listed and the running one kept), rule.enable and rule.disable.
//
// Expiry: a command whose expiry has passed on the gateway's clock when the
// worker takes it does not run; its reply says "expired".
//
// At-most-once: before a command runs, its id is appended to an id log in
// the state directory and fsync'd; its reply is appended after it ran. A
// command whose id is in the log does not run again, whatever happened in
// between (broker redelivery, a cloud retry, a restart); its reply says
// "duplicate" and carries the first reply in result.original. A command
// that was running when the gateway stopped is never retried. Ids are kept
// until an hour after their command expired (expired commands cannot run
// anyway); the log is rewritten when it holds more than 256 KiB of dead
// records, and at most Options.MaxIDs unexpired ids are kept: beyond that a
// new command is refused instead of forgetting an id.
//
// The Executor queues what Handle receives (never blocking the MQTT
// client; a full queue answers "busy") and runs the commands one at a time
// in Run's worker, each under a deadline (Options.Timeout, plus a pulse's
// duration). Replies go out through Options.Reply from a separate goroutine
// and are retried for a while when the uplink is down. Every command, from
// the cloud or local, is also recorded as an event (measurement "command",
// tags name, status and source, fields id, message and latency_ms) through
// Options.Emit.
//
// Execute and Command run a command for local callers in their own
// goroutine (no id, no expiry, not remembered); Command has the signature of
// the rules engine's Commander.
package command
