package execlog

import (
	"bytes"
	"encoding/hex"
	"sync"
	"testing"
	"unicode/utf8"
)

// lossyCases were produced by Rust 1.x String::from_utf8_lossy (input hex →
// output hex), so they pin the original's behaviour, not ours.
var lossyCases = []struct{ in, want string }{
	{"", ""},
	{"68656c6c6f0a", "68656c6c6f0a"},
	// The protocol vector exec_stdout_non_utf8.
	{"fffe006869c328801b5b306d", "efbfbdefbfbd006869efbfbd28efbfbd1b5b306d"},
	// Unicode Table 3-8: a, F1 80 80 | E1 80 | C2 | b, 80 | c, 80 | BF | d.
	{"61f18080e180c262806380bf64", "61efbfbdefbfbdefbfbd62efbfbd63efbfbdefbfbd64"},
	{"eda080", "efbfbdefbfbdefbfbd"},         // surrogate: ED then A0 is no prefix
	{"edbfbf", "efbfbdefbfbdefbfbd"},         // surrogate
	{"ed9fbf", "ed9fbf"},                     // U+D7FF
	{"c0af", "efbfbdefbfbd"},                 // overlong '/'
	{"e08080", "efbfbdefbfbdefbfbd"},         // overlong
	{"e09f80", "efbfbdefbfbdefbfbd"},         // overlong
	{"f4908080", "efbfbdefbfbdefbfbdefbfbd"}, // above U+10FFFF
	{"f8888080", "efbfbdefbfbdefbfbdefbfbd"},
	{"fc84808080", "efbfbdefbfbdefbfbdefbfbdefbfbd"},
	{"f5", "efbfbd"},
	{"e0", "efbfbd"},
	{"c2", "efbfbd"},
	{"e282", "efbfbd"},   // truncated at the end: one maximal subpart
	{"f09f98", "efbfbd"}, // truncated emoji
	{"c241", "efbfbd41"},
	{"e0a0", "efbfbd"},
	{"e0a041", "efbfbd41"},
	{"f09f9880", "f09f9880"}, // 😀
	{"f0908080", "f0908080"}, // U+10000
	{"f48fbfbf", "f48fbfbf"}, // U+10FFFF
	{"ee8080", "ee8080"},
	{"efbfbd", "efbfbd"}, // U+FFFD itself passes through
	{"80bf64", "efbfbdefbfbd64"},
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLossyMatchesRust(t *testing.T) {
	for _, c := range lossyCases {
		in, want := unhex(t, c.in), unhex(t, c.want)
		if got := appendLossy(nil, in); !bytes.Equal(got, want) {
			t.Errorf("appendLossy(%s) = %x, want %s", c.in, got, c.want)
		}
		if got := referenceLossy(in); !bytes.Equal(got, want) {
			t.Errorf("referenceLossy(%s) = %x, want %s (the fuzz oracle is wrong)", c.in, got, c.want)
		}
	}
}

// prefixes holds every proper prefix (1 to 3 bytes) of the UTF-8 encoding of
// every scalar value: by definition, a maximal subpart is the longest such
// prefix at the current position, or one byte.
var prefixes = sync.OnceValue(func() map[string]bool {
	m := make(map[string]bool)
	var b [utf8.UTFMax]byte
	for r := rune(0x80); r <= utf8.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		n := utf8.EncodeRune(b[:], r)
		for k := 1; k < n; k++ {
			m[string(b[:k])] = true
		}
	}
	return m
})

// referenceLossy is the straightforward from_utf8_lossy: decode what is
// valid, replace each maximal subpart of what is not.
func referenceLossy(src []byte) []byte {
	var out []byte
	for i := 0; i < len(src); {
		r, n := utf8.DecodeRune(src[i:])
		if r != utf8.RuneError || n > 1 {
			out = append(out, src[i:i+n]...)
			i += n
			continue
		}
		n = 1
		for k := min(3, len(src)-i); k > 1; k-- {
			if prefixes()[string(src[i:i+k])] {
				n = k
				break
			}
		}
		out = append(out, "\uFFFD"...)
		i += n
	}
	return out
}

func FuzzLossy(f *testing.F) {
	for _, c := range lossyCases {
		f.Add(unhex(f, c.in))
	}
	f.Add([]byte("plain ascii, long enough for the 8-byte path"))
	f.Add([]byte("héllo wörld ✓ 😀 \xed\xa0\x80 tail"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got := appendLossy(nil, in)
		if want := referenceLossy(in); !bytes.Equal(got, want) {
			t.Fatalf("appendLossy(%x) = %x, reference %x", in, got, want)
		}
		if !utf8.Valid(got) {
			t.Fatalf("appendLossy(%x) = %x is not valid UTF-8", in, got)
		}
		if utf8.Valid(in) && !bytes.Equal(got, in) {
			t.Fatalf("appendLossy changed valid input %x to %x", in, got)
		}
		// Appending must not disturb what dst already holds.
		if got := appendLossy([]byte("pre"), in); !bytes.HasPrefix(got, []byte("pre")) || !bytes.Equal(got[3:], referenceLossy(in)) {
			t.Fatalf("appendLossy with a prefix = %x", got)
		}
	})
}
