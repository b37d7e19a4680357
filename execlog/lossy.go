package execlog

import "unicode/utf8"

// replacement is U+FFFD in UTF-8.
const replacement = "\uFFFD"

// next classifies the bytes at the start of p, whose first byte is not
// ASCII: a well-formed sequence of n bytes (valid) or an ill-formed maximal
// subpart of n bytes that becomes one U+FFFD. This is the Unicode
// "substitution of maximal subparts" practice that Rust's
// String::from_utf8_lossy follows; utf8.DecodeRune would report every byte of
// a truncated sequence separately and strings.ToValidUTF8 collapses whole
// runs, so neither matches the original's output.
func next(p []byte) (n int, valid bool) {
	c := p[0]
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		if len(p) < 2 || p[1] < lo || p[1] > hi {
			return 1, false
		}
		return 2, true
	case c >= 0xE0 && c <= 0xEF:
		switch c {
		case 0xE0:
			lo = 0xA0 // overlong below U+0800
		case 0xED:
			hi = 0x9F // surrogates
		}
		if len(p) < 2 || p[1] < lo || p[1] > hi {
			return 1, false
		}
		if len(p) < 3 || !continuation(p[2]) {
			return 2, false
		}
		return 3, true
	case c >= 0xF0 && c <= 0xF4:
		switch c {
		case 0xF0:
			lo = 0x90 // overlong below U+10000
		case 0xF4:
			hi = 0x8F // above U+10FFFF
		}
		if len(p) < 2 || p[1] < lo || p[1] > hi {
			return 1, false
		}
		if len(p) < 3 || !continuation(p[2]) {
			return 2, false
		}
		if len(p) < 4 || !continuation(p[3]) {
			return 3, false
		}
		return 4, true
	}
	// Continuation bytes, C0, C1 and F5..FF never start a sequence.
	return 1, false
}

func continuation(b byte) bool { return b&0xC0 == 0x80 }

// appendLossy appends src to dst with every ill-formed maximal subpart
// replaced by U+FFFD, exactly like String::from_utf8_lossy.
func appendLossy(dst, src []byte) []byte {
	start := 0
	for i := 0; i < len(src); {
		if src[i] < utf8.RuneSelf {
			i++
			continue
		}
		n, valid := next(src[i:])
		if !valid {
			dst = append(dst, src[start:i]...)
			dst = append(dst, replacement...)
			start = i + n
		}
		i += n
	}
	return append(dst, src[start:]...)
}
