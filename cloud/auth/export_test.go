package auth

// ParseTokenFile is parseTokenFile for the fuzz test.
func ParseTokenFile(path string, b []byte) ([]TokenInfo, int, error) {
	infos, entries, err := parseTokenFile(path, b)
	return infos, len(entries), err
}

// ParseUserFile is parseUserFile for the fuzz test.
func ParseUserFile(path string, b []byte) ([]UserInfo, int, error) {
	infos, users, err := parseUserFile(path, b)
	return infos, len(users), err
}
