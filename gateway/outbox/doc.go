// Package outbox is the gateway's durable store between the pipeline and the
// MQTT uplink. A record the outbox accepted survives kill -9 and power loss,
// is deleted only after the cloud confirmed it (Confirm; with an uplink
// without end-to-end delivery, after the broker's QoS 1 PUBACK: Ack), and
// reaches the cloud in sequence order; what it cannot deliver any more it
// declares (Losses).
//
// # Records, messages, sequence numbers
//
// The pipeline calls Append with records of one Kind. The outbox seals them
// into Messages: batches of up to MaxBatchRecords records and MaxBatchBytes
// body bytes, telemetry and events never mixed. Every message gets the next
// per-gateway sequence number (one counter for both kinds, +1 per message,
// never reused, surviving restarts) and is encoded once into the version 1
// JSON body (payload.AppendBatch's format, with Sent = seal time). The uplink
// publishes the body as is, so a message sent again after a reconnect or a
// crash is byte-identical and the cloud can drop the duplicate by seq.
//
// Append encodes and validates its records in the caller's goroutine (a
// record the cloud's strict decoder would reject is refused there, with an
// error naming it, instead of poisoning a whole batch later). The committer
// then only concatenates encoded records behind a batch header; each record
// is encoded exactly once. Encode (or EncodeTo, appending to a chunk) does
// the same without queueing, and AppendEncodedAsync appends what it made
// as one append: the gateway's committer encodes each Emit on its own into
// chunks, so that a refused record costs only its Emit, and hands a chunk
// over without a copy.
//
// # Group commit
//
// One goroutine, the committer, owns all writes. Appends that arrive while
// it waits (CommitInterval) or while the previous commit runs form a group:
// the group is sealed into messages, written with one write per segment file
// touched, and made durable with one fsync per file (plus one of the folder
// when a segment was created or removed). Only then does each Append of the
// group return nil: "accepted" means "on disk". Under load one fsync carries
// hundreds of readings.
//
// The commit is pipelined: while one group's fsync runs (on a goroutine of
// its own), the next group, if it is due already, is sealed and written
// behind it, so the latency of an fsync does not cap throughput. Groups are
// still published in order and each only after its own fsync returned:
// Pending never hands out, and no Append returns for, a message a restart
// might not find. If a group's fsync fails, the group written behind it is
// cut off with it (its bytes follow), its numbers are skipped and declared
// too, and it is committed again; anything off the straight path (a drop
// to stay within the bound, a failed write, housekeeping) first waits for
// the group in flight, so it meets the outbox as before.
//
// Even with CommitInterval 0, appends that arrive during an fsync share the
// next one. A window of a few milliseconds (DefaultCommitInterval) gives
// about the same throughput under load but halves the fsyncs (measured:
// 64 appenders, 11k readings/s either way, 370 vs 180 fsyncs/s), which
// matters for the wear of SD cards and eMMC; it costs up to one window of
// latency per Append.
//
// TelemetryWindow bounds fsyncs whatever the device count: a queue holding
// only telemetry waits until its oldest append is that old, then commits
// in one group; an event append ends the wait at once and takes the
// waiting telemetry along, so events are never held back by it.
// AppendAsync queues without waiting, so one goroutine can keep a window's
// worth of appends queued, in order, and collect the results later. Measured
// (BenchmarkTelemetryLoad: 500 bays, 50 readings/s, one Append each): 43
// fsyncs/s and 292 bytes written per reading with a 10 ms commit interval,
// 2 fsyncs/s and 174 bytes per reading with a 1 s window. What a power cut
// can lose is exactly what no Append had returned for: readings still in
// the window (at most TelemetryWindow of them) and the group being written;
// every Append that returned nil survives (TestKill9, TestCrashChild).
//
// # Segment logs
//
// Each kind has its own append-only log (telemetry can then be dropped
// without touching events), made of segment files of about SegmentBytes
// (by default MaxBytes/16 within 4 KiB to 4 MiB, so any bound the config
// accepts works and a drop by the bound loses one small segment, not half
// the outbox), named <kind>-<first seq>.seg. Every entry is framed as
//
//	length u32 | crc32c u32 | seq u64 | kind u8 | records u32 | body
//
// so recovery can tell a complete entry from a torn one. Open scans every
// segment and keeps each intact entry. An entry that fails its checksum (or
// has an impossible length) but is followed by intact entries is stepped
// over: the scan finds the next offset where an entry of the segment's kind
// with a higher seq passes its CRC (which covers the length field), logs the
// damaged region and keeps going (Stats.SkippedBytes), so one flipped byte
// loses one message, not the rest of its segment. Bytes at the end that hold
// no intact entry are a torn tail and are cut off (Stats.TruncatedBytes).
// After power loss only the unsynced tail can be damaged, and no Append of
// that tail had returned.
//
// # Sequence numbers never go back; every loss is declared
//
// The state file holds a high-water mark: the committer reserves numbers
// in blocks of reserveBlock (64) and writes the state file before it writes
// a message numbered beyond the reservation, so one state write covers 64
// messages. Open resumes above the reservation and above every stored seq,
// whatever happened to the segments (truncated, deleted, damaged).
//
// Open then accounts for every number up to the high-water mark: stored,
// acknowledged (state file), or already declared. What is left was lost
// without the outbox knowing: numbers up to the last one the state file
// knew committed are declared LossMissing and counted (Stats.DroppedMissing,
// one record each as a lower bound); numbers above it, reserved before an
// unclean stop, were most likely never used and are declared LossUnused
// (Stats.Skipped). A clean Close records the exact high-water mark, so a
// restart skips nothing. Messages dropped by the bound (LossFull), found
// corrupt when read back (LossCorrupt) and numbers skipped by a failed write
// (LossUnused) are declared too. Losses returns the declared ranges, kept in
// the state file until ForgetLosses; the uplink announces them to the cloud
// (payload.Dropped), so a gap the cloud sees is either repaired or declared.
//
// # Acknowledgement and the state file
//
// Ack marks messages acknowledged, in any order; Confirm acknowledges every
// message up to a number; Sent only records a PUBACK (delivery.go). A
// segment whose messages are all acknowledged is deleted (not the one being
// written, unless the disk is full). The small
// state file (replaced atomically: temp file, fsync, rename, folder fsync)
// records the high-water mark, the declared losses and the acknowledged
// set, as "everything up to W" plus ranges above W (a range also covers the
// numbers deleted inside it). It is written at most every
// AckPersistInterval, when a reservation runs out, before any segment is
// deleted, and on Close.
// Acknowledgements not yet written are forgotten by a crash: those messages
// are sent again, which the cloud tolerates. An unacknowledged message is
// never lost this way, and the counter never goes back, because the state
// holds the last seq before the segment holding it can be deleted.
//
// # Reading for the uplink
//
// Pending blocks until an unacknowledged message above a given seq exists and
// returns them in seq order, both logs merged. Memory holds only an index
// (24 bytes per stored message); bodies are read back from the segment files
// (normally from the page cache) with one read per run of adjacent messages,
// and their checksums are checked again on the way out. A message that fails
// that check is logged, dropped and declared (Stats.DroppedCorrupt,
// LossCorrupt) rather than blocking the uplink forever.
//
// # The bound
//
// MaxBytes bounds both logs together. An append that would go over it drops
// whole segments of the oldest telemetry, acknowledged or not, counting the
// unacknowledged messages and records lost (Stats.DroppedOldest) and logging
// a warning with the counts. Events are never dropped. When only events are
// left, new telemetry is refused with ErrFull (Stats.RefusedTelemetry);
// events are still taken up to a hard ceiling of MaxBytes + 25%, beyond which
// they are refused with ErrFull too (Stats.RefusedEvents). An Append is
// admitted or refused as a whole. Dropped messages are declared (LossFull),
// so the cloud sees a declared gap; the stats count it. The bound is checked against an upper
// estimate of each append's size, so the logs stay below it by up to one
// batch header per append.
//
// # A full disk
//
// A bound larger than the file system is met by the disk first: the
// default segment size also follows the file system's size, and a commit
// that fails with ENOSPC makes the bytes on disk the bound for 30 s and is
// tried once more against it, so that it and the next appends drop the
// oldest telemetry segments (declared, counted) as the bound does, and a
// fully acknowledged active segment is deleted too: a full disk costs the
// oldest readings, not the group being written, events least of all. A
// spare file (256 KiB) is released when the state file cannot be written
// for lack of space; failing that, acknowledged segments are deleted before
// the state is recorded (safe for the counter, whose reservation is always
// on record first; a crash in between declares them missing). Open on a
// full disk logs it and starts. Failed commits are logged once and then at
// most every 10 s with the number suppressed.
//
// # Failure
//
// If a write or fsync fails, the group's appends get the error, the bytes
// of the group are cut off again and their sequence numbers are skipped
// (never reused, since some of them may have reached the disk) and declared
// (LossUnused). If the
// cut-off itself fails, the outbox refuses further appends.
//
// One process owns a folder at a time (an advisory lock on Dir/LOCK).
package outbox
