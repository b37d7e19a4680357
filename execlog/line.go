package execlog

import (
	"encoding/binary"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendLine appends one exec.log line, newline included, to dst. The "id"
// field is written for every source but System.
func AppendLine(dst []byte, t time.Time, s Source, session uint64, data []byte) []byte {
	var c clock
	return c.appendLine(dst, t.UnixNano(), s, session, data)
}

// MaxLineSize is the longest exec.log line a chunk of n bytes can make: six
// bytes for each byte (a control character becomes \u00XX), plus the time,
// the source, a 20-digit id and the JSON around them.
func MaxLineSize(n int) int { return 6*n + 128 }

// clock formats "t" values, reusing the seconds part while it stays the same
// so that a busy writer formats a calendar date about once a second.
type clock struct {
	sec    int64
	valid  bool
	prefix [32]byte // "2006-01-02T15:04:05"; longer for years past 9999
	n      int
}

func (c *clock) appendTime(dst []byte, nanos int64) []byte {
	sec, frac := nanos/1e9, nanos%1e9
	if frac < 0 { // before 1970: floor, so the fraction stays positive
		sec, frac = sec-1, frac+1e9
	}
	if !c.valid || sec != c.sec {
		c.sec, c.valid = sec, true
		c.n = len(time.Unix(sec, 0).UTC().AppendFormat(c.prefix[:0], "2006-01-02T15:04:05"))
	}
	ms := frac / 1e6 // truncated, as chrono's SecondsFormat::Millis does
	dst = append(dst, c.prefix[:c.n]...)
	return append(dst, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

func (c *clock) appendLine(dst []byte, nanos int64, s Source, session uint64, data []byte) []byte {
	dst = append(dst, `{"t":"`...)
	dst = c.appendTime(dst, nanos)
	dst = append(dst, `","s":"`...)
	dst = append(dst, s.String()...)
	dst = append(dst, `","d":"`...)
	dst = appendString(dst, data)
	if s == System {
		return append(dst, "\"}\n"...)
	}
	dst = append(dst, `","id":`...)
	dst = strconv.AppendUint(dst, session, 10)
	return append(dst, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// escapes maps the ASCII bytes serde_json escapes to their escape letter
// ('u' for \u00XX). HTML-sensitive bytes and DEL are written raw, as
// serde_json does.
var escapes = [utf8.RuneSelf]byte{
	'"': '"', '\\': '\\', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't',
	0x00: 'u', 0x01: 'u', 0x02: 'u', 0x03: 'u', 0x04: 'u', 0x05: 'u', 0x06: 'u', 0x07: 'u',
	0x0B: 'u', 0x0E: 'u', 0x0F: 'u', 0x10: 'u', 0x11: 'u', 0x12: 'u', 0x13: 'u', 0x14: 'u',
	0x15: 'u', 0x16: 'u', 0x17: 'u', 0x18: 'u', 0x19: 'u', 0x1A: 'u', 0x1B: 'u', 0x1C: 'u',
	0x1D: 'u', 0x1E: 'u', 0x1F: 'u',
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// plain reports whether none of the 8 bytes in x needs attention: no
// control byte, quote, backslash or non-ASCII byte.
func plain(x uint64) bool {
	q, b := x^'"'*ones, x^'\\'*ones // zero bytes where x has '"' or '\\'
	return (x|(x-0x20*ones)|(q-ones)&^q|(b-ones)&^b)&highs == 0
}

// appendString appends the JSON string body (no quotes) for the lossy UTF-8
// text of src.
func appendString(dst, src []byte) []byte {
	start, i := 0, 0
	for i < len(src) {
		if i+8 <= len(src) && plain(binary.LittleEndian.Uint64(src[i:])) {
			i += 8
			continue
		}
		// Something in these 8 bytes needs a look: go through them one by
		// one before trying the word test again.
		for end := min(i+8, len(src)); i < end; {
			c := src[i]
			if c >= utf8.RuneSelf {
				n, valid := next(src[i:])
				if !valid {
					dst = append(dst, src[start:i]...)
					dst = append(dst, replacement...)
					start = i + n
				}
				i += n
				continue
			}
			e := escapes[c]
			i++
			if e == 0 {
				continue
			}
			dst = append(dst, src[start:i-1]...)
			if e == 'u' {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			} else {
				dst = append(dst, '\\', e)
			}
			start = i
		}
	}
	return append(dst, src[start:]...)
}
