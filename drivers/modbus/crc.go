package modbus

// crcTable holds the CRC-16/MODBUS remainder of every byte value, so that
// CRC runs one table lookup per byte instead of eight shifts.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
		t[i] = crc
	}
	return t
}()

// CRC computes CRC-16/MODBUS (reflected polynomial 0xA001, initial value
// 0xFFFF). On the wire it is sent low byte first.
func CRC(data []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, b := range data {
		crc = crc>>8 ^ crcTable[byte(crc)^b]
	}
	return crc
}

// AppendCRC appends the CRC of frame to it, low byte first.
func AppendCRC(frame []byte) []byte {
	c := CRC(frame)
	return append(frame, byte(c), byte(c>>8))
}

// CheckCRC reports whether the last two bytes of frame are the CRC of the rest.
func CheckCRC(frame []byte) bool {
	if len(frame) < 3 {
		return false
	}
	n := len(frame) - 2
	c := CRC(frame[:n])
	return frame[n] == byte(c) && frame[n+1] == byte(c>>8)
}
