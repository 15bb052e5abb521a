package osdp

// CRC16 is the OSDP frame check: CRC-16 with polynomial 0x1021 processed
// MSB first, initial value 0x1D0F and no final XOR. It is sent low byte
// first.
func CRC16(b []byte) uint16 {
	crc := uint16(0x1D0F)
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// Checksum is the one-byte check used when CTRL's CRC bit is clear: the
// two's complement of the low byte of the sum of all bytes.
func Checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}
