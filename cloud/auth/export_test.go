package auth

// ParseTokenFile is parseTokenFile for the fuzz test.
func ParseTokenFile(path string, b []byte) ([]TokenInfo, int, error) {
	infos, entries, err := parseTokenFile(path, b)
	return infos, len(entries), err
}
