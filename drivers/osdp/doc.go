// Package osdp is the gateway's OSDP v2.2 Control Panel (CP): it drives card
// readers and keypads (Peripheral Devices, PDs) that share one RS-485 line,
// over the bus arbiter's drivers.Transactor.
//
// Concepts:
//
//   - Frame: SOM 0x53, address (0..126, 0x7F broadcast; replies set 0x80),
//     LEN (SOM through the check bytes), CTRL (sequence number, CRC or
//     checksum, SCB present), an optional Security Control Block, the
//     command or reply code, its data, a 4-byte MAC under the secure channel,
//     and a CRC-16 (poly 0x1021, init 0x1D0F, sent low byte first) or a
//     one-byte checksum. A 0xFF mark byte may precede the SOM. Encode,
//     Decode and FrameLen handle frames; command builders (Out, LEDCmd, ...)
//     make the data of commands and Parse* functions read the data of replies.
//
//   - Sequence numbers: the CP starts (and resynchronises) a PD with 0 and
//     then cycles 1, 2, 3. A command that got no reply is sent again with
//     the same number and the same bytes, so a PD that did answer replays its
//     cached reply instead of executing the command twice.
//
//   - Secure Channel: AES-128 with a per-reader key SCBK (or the well-known
//     SCBK-D in install mode). A CHLNG/CCRYPT/SCRYPT/RMAC_I handshake
//     derives session keys S-ENC, S-MAC1 and S-MAC2 from both sides' random
//     numbers; afterwards every frame carries a chained CBC-MAC (4 bytes sent)
//     and data is AES-CBC encrypted. Session holds that state; KEYSET gives a
//     reader its own SCBK.
//
//   - PD: the CP's state machine for one reader: ID, CAP, the secure-channel
//     handshake (and KEYSET when a new key is configured), then POLL. It
//     handles NAKs (checksum fallback on NAK 1, resync on NAK 4, a new
//     handshake on NAK 6), BUSY, and marks the reader offline after 8 s
//     without a valid reply, backing off before it tries again. Replies
//     become Events: card reads, keypad digits, tamper and power, inputs,
//     online and offline.
//
//   - Driver: registered as "osdp". Spec.Unit is the PD address; options
//     choose the secure channel and its key. The Device polls one round per
//     Poll, hands events out as `reader` records through TakeEvents, and
//     accepts writes to the points "led", "buzzer", "output.N" and "text".
package osdp
