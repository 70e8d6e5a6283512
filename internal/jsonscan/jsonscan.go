// Package jsonscan walks JSON already known to be valid without decoding it:
// members and elements come out as sub-slices of the input, so that a
// request with a large base64 image is not copied once per nesting level,
// and the bytes of every value are exactly the bytes the user wrote.
package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// ErrMalformed is returned for input that is not the JSON expected (the
// scanner checks only what it must: validate with json.Valid first).
var ErrMalformed = errors.New("malformed JSON")

// Members calls fn with each member of the JSON object b, in order. Each
// value is a sub-slice of b with its capacity clipped, so appending to it
// cannot overwrite b.
func Members(b []byte, fn func(key string, val []byte) error) error {
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return ErrMalformed
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return ErrMalformed
		}
		ke := skipString(b, i)
		if ke < 0 {
			return ErrMalformed
		}
		key, err := String(b[i:ke])
		if err != nil {
			return err
		}
		i = SkipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return ErrMalformed
		}
		i = SkipSpace(b, i+1)
		ve := skipValue(b, i)
		if ve < 0 {
			return ErrMalformed
		}
		if err := fn(key, b[i:ve:ve]); err != nil {
			return err
		}
		i = SkipSpace(b, ve)
		if i >= len(b) {
			return ErrMalformed
		}
		switch b[i] {
		case ',':
			i = SkipSpace(b, i+1)
		case '}':
			return nil
		default:
			return ErrMalformed
		}
	}
}

// Elements calls fn with each element of the JSON array b, in order.
func Elements(b []byte, fn func(i int, val []byte) error) error {
	i := SkipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return ErrMalformed
	}
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for n := 0; ; n++ {
		ve := skipValue(b, i)
		if ve < 0 {
			return ErrMalformed
		}
		if err := fn(n, b[i:ve:ve]); err != nil {
			return err
		}
		i = SkipSpace(b, ve)
		if i >= len(b) {
			return ErrMalformed
		}
		switch b[i] {
		case ',':
			i = SkipSpace(b, i+1)
		case ']':
			return nil
		default:
			return ErrMalformed
		}
	}
}

// String unquotes the JSON string q as encoding/json would, invalid UTF-8
// included.
func String(q []byte) (string, error) {
	if bytes.IndexByte(q, '\\') < 0 && utf8.Valid(q) {
		return string(q[1 : len(q)-1]), nil
	}
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return "", ErrMalformed
	}
	return s, nil
}

// SkipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// skipString returns the index just past the string starting at b[i], or -1.
// It jumps between quotes and backslashes with IndexByte: base64 payloads make
// strings of megabytes.
func skipString(b []byte, i int) int {
	j, quote := i+1, -1
	for j < len(b) {
		if quote < j {
			q := bytes.IndexByte(b[j:], '"')
			if q < 0 {
				return -1
			}
			quote = j + q
		}
		bs := bytes.IndexByte(b[j:quote], '\\')
		if bs < 0 {
			return quote + 1
		}
		j += bs + 2 // skip the escaped character, which may be a quote
	}
	return -1
}

// skipValue returns the index just past the value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = skipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	j := i
	for j < len(b) && !isSpace(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
