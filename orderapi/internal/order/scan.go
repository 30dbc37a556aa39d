package order

// scanFlat parses the bodies clients send every time, without encoding/json:
// one object whose keys are in known, appear once and hold no escapes, and
// whose values are strings of printable ASCII without escapes, numbers,
// true, false or null, with JSON whitespace between tokens. It reports
// false for anything else, valid or not; decodeAny then reads the body and
// gives every error its message. Whatever it accepts, decodeAny accepts
// with the same members (FuzzDecodeObject).
func scanFlat(body []byte, known []string) (members, bool) {
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return nil, false
	}
	i = skipSpace(body, i+1)
	ms := make(members, 0, len(known))
	if i < len(body) && body[i] == '}' {
		return ms, skipSpace(body, i+1) == len(body)
	}
	for {
		end, ok := scanPlainString(body, i)
		if !ok {
			return nil, false
		}
		key, ok := knownKey(body[i+1:end-1], known)
		if _, dup := ms.get(key); !ok || dup {
			return nil, false
		}
		if i = skipSpace(body, end); i == len(body) || body[i] != ':' {
			return nil, false
		}
		i = skipSpace(body, i+1)
		if end, ok = scanScalar(body, i); !ok {
			return nil, false
		}
		ms = append(ms, member{key, body[i:end]})
		if i = skipSpace(body, end); i == len(body) {
			return nil, false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			return ms, skipSpace(body, i+1) == len(body)
		default:
			return nil, false
		}
	}
}

// knownKey returns the entry of known that k spells, without allocating.
func knownKey(k []byte, known []string) (string, bool) {
	for _, name := range known {
		if string(k) == name {
			return name, true
		}
	}
	return "", false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanPlainString returns the end of the string starting at b[i] if it
// holds only printable ASCII and no escape, so its bytes are its value.
func scanPlainString(b []byte, i int) (int, bool) {
	if i == len(b) || b[i] != '"' {
		return 0, false
	}
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20 || c == '\\' || c >= 0x7f:
			return 0, false
		}
	}
	return 0, false
}

// scanScalar returns the end of the plain string, number or literal that
// starts at b[i].
func scanScalar(b []byte, i int) (int, bool) {
	if i == len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return scanPlainString(b, i)
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		return literal(b, i, "null")
	}
	return scanNumber(b, i)
}

func literal(b []byte, i int, word string) (int, bool) {
	if len(b)-i < len(word) || string(b[i:i+len(word)]) != word {
		return 0, false
	}
	return i + len(word), true
}

// scanNumber returns the end of the JSON number (RFC 8259 section 6) that
// starts at b[i].
func scanNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i)
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	return i, true
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}
