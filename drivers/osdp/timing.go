package osdp

import "time"

// Turnaround is the silence an OSDP line needs before a message, for a line
// of baud bits per second and bitsPerChar bits per character (10 for OSDP's
// 8N1): two character times, 2.08 ms at 9600 baud and 174 µs at 115200.
//
// Source: SIA OSDP v2.2, "Timing": the transmitting device shall guarantee a
// gap of at least two character times before it accesses the channel, so
// that signal converters and multiplexers can sense that the line has gone
// idle (quoted from the standard in libosdp's doc/protocol/introduction.rst,
// goToMain/libosdp). The 0xFF mark byte before a command's SOM is a
// separate rule (the line marks for one character before the message) and
// is part of the frame. OSDP has nothing like Modbus RTU's t3.5: a frame
// carries its length, and no silence marks its end. The same section gives
// the reply timing the bus's timeout covers: a PD answers within 200 ms,
// typically within 3 ms (REPLY_DELAY).
//
// The driver registers it as its drivers.Info.Turnaround, so a bus whose
// devices are all OSDP readers keeps this silence instead of t3.5.
func Turnaround(baud, bitsPerChar int) time.Duration {
	if baud <= 0 {
		return 0
	}
	return time.Duration(2*bitsPerChar) * time.Second / time.Duration(baud)
}
