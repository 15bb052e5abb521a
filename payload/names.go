package payload

// The naming rules of ids and names, checked byte by byte: a gateway
// checks them while it loads its config and for every command, and each
// regexp they replaced stayed compiled in the heap for the process's
// lifetime (about 150 KiB for the daemon's dozen patterns). Each is fuzzed
// against the regexp of its rule (names_test.go).

// ValidID reports whether s is a valid site or gateway id: [a-z0-9-]{1,64}.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(lower(c) || digit(c) || c == '-') {
			return false
		}
	}
	return true
}

// ValidDeviceID reports whether s is a valid device id:
// [a-z0-9][a-z0-9_.-]{0,63}. Rule, profile, door and lane names follow the
// same rule.
func ValidDeviceID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case lower(c) || digit(c):
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ValidIdent reports whether s is an identifier: [A-Za-z_][A-Za-z0-9_]*
// (a field or variable name in rules and deadbands).
func ValidIdent(s string) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case lower(c) || upper(c) || c == '_':
		case i > 0 && digit(c):
		default:
			return false
		}
	}
	return true
}

// ValidCommandID reports whether s can be a command id: [A-Za-z0-9_-]{1,64}. The id
// is also the last topic level, so it never holds '/', '+' or '#'.
func ValidCommandID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(lower(c) || upper(c) || digit(c) || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidCommandName reports whether s can be a command name: dotted lower-case
// words such as device.write ([a-z][a-z0-9_]* joined by dots), at most 64
// characters.
func ValidCommandName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	wordStart := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case wordStart:
			if !lower(c) {
				return false
			}
			wordStart = false
		case c == '.':
			wordStart = true
		case !(lower(c) || digit(c) || c == '_'):
			return false
		}
	}
	return !wordStart
}

func lower(c byte) bool { return c >= 'a' && c <= 'z' }
func upper(c byte) bool { return c >= 'A' && c <= 'Z' }
func digit(c byte) bool { return c >= '0' && c <= '9' }
