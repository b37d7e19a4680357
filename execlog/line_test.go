package execlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 4, 30, 20, 32, 59, 688_000_000, time.UTC)

func TestAppendLine(t *testing.T) {
	cases := []struct {
		name    string
		at      time.Time
		s       Source
		session uint64
		data    string
		want    string
	}{
		{"protocol example", t0, Stdout, 1, "hello\n",
			`{"t":"2026-04-30T20:32:59.688Z","s":"stdout","d":"hello\n","id":1}` + "\n"},
		{"stderr", t0, Stderr, 2, "oops", `{"t":"2026-04-30T20:32:59.688Z","s":"stderr","d":"oops","id":2}` + "\n"},
		{"tty output", t0, Output, 3, "$ ", `{"t":"2026-04-30T20:32:59.688Z","s":"output","d":"$ ","id":3}` + "\n"},
		{"system has no id", t0, System, 9, "--- sandbox started ---\n",
			`{"t":"2026-04-30T20:32:59.688Z","s":"system","d":"--- sandbox started ---\n"}` + "\n"},
		{"empty chunk", t0, Stdout, 1, "", `{"t":"2026-04-30T20:32:59.688Z","s":"stdout","d":"","id":1}` + "\n"},
		{"largest id", t0, Stdout, 1<<64 - 1, "x",
			`{"t":"2026-04-30T20:32:59.688Z","s":"stdout","d":"x","id":18446744073709551615}` + "\n"},
		{"milliseconds truncate", time.Date(2026, 1, 2, 3, 4, 5, 999_999_999, time.UTC), Stdout, 1, "",
			`{"t":"2026-01-02T03:04:05.999Z","s":"stdout","d":"","id":1}` + "\n"},
		{"zero milliseconds", time.Date(2026, 12, 31, 23, 59, 59, 999_999, time.UTC), Stdout, 1, "",
			`{"t":"2026-12-31T23:59:59.000Z","s":"stdout","d":"","id":1}` + "\n"},
		{"local time written as UTC", time.Date(2026, 5, 1, 1, 2, 59, 688_000_000, time.FixedZone("CEST", 2*3600)), Stdout, 1, "",
			`{"t":"2026-04-30T23:02:59.688Z","s":"stdout","d":"","id":1}` + "\n"},
		{"before 1970", time.Date(1969, 12, 31, 23, 59, 59, 500_000_000, time.UTC), Stdout, 1, "",
			`{"t":"1969-12-31T23:59:59.500Z","s":"stdout","d":"","id":1}` + "\n"},
		// serde_json: short escapes, \u00XX lowercase, no HTML escaping, DEL raw.
		{"escapes", t0, Stdout, 1, "q\" b\\ \b\f\n\r\t \x00\x01\x0b\x1b\x1f \x7f <a href='x'>&amp;</a>/",
			`{"t":"2026-04-30T20:32:59.688Z","s":"stdout","d":"q\" b\\ \b\f\n\r\t \u0000\u0001\u000b\u001b\u001f ` + "\x7f" + ` <a href='x'>&amp;</a>/","id":1}` + "\n"},
		{"non-ASCII raw", t0, Stdout, 1, "héllo ✓ 😀 \u2028",
			`{"t":"2026-04-30T20:32:59.688Z","s":"stdout","d":"héllo ✓ 😀 ` + "\u2028" + `","id":1}` + "\n"},
		// The protocol vector exec_stdout_non_utf8: ff fe 00 'h' 'i' c3 '(' 80 ESC [ 0 m.
		{"non-UTF-8 vector", t0, Stdout, 4, "\xff\xfe\x00hi\xc3(\x80\x1b[0m",
			`{"t":"2026-04-30T20:32:59.688Z","s":"stdout","d":"��\u0000hi�(�\u001b[0m","id":4}` + "\n"},
		{"escape after the 8-byte path", t0, Stdout, 1, "abcdefgh\"ijklmnop\x00qrstuvwxyz\xe2\x82",
			`{"t":"2026-04-30T20:32:59.688Z","s":"stdout","d":"abcdefgh\"ijklmnop\u0000qrstuvwxyz�","id":1}` + "\n"},
	}
	for _, c := range cases {
		got := AppendLine([]byte("prev"), c.at, c.s, c.session, []byte(c.data))
		if string(got) != "prev"+c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got[4:], c.want)
		}
	}
}

func TestClockCache(t *testing.T) {
	var c clock
	// Same second, then the next, then back: the cached prefix must follow.
	for _, at := range []time.Time{t0, t0.Add(300 * time.Millisecond), t0.Add(time.Second), t0, t0.AddDate(1, 0, 0)} {
		got := string(c.appendTime(nil, at.UnixNano()))
		if want := at.UTC().Format("2006-01-02T15:04:05.000Z"); got != want {
			t.Errorf("appendTime(%v) = %s, want %s", at, got, want)
		}
	}
}

func TestSourceString(t *testing.T) {
	for s, want := range map[Source]string{Stdout: "stdout", Stderr: "stderr", Output: "output", System: "system", 7: "source(7)"} {
		if got := s.String(); got != want {
			t.Errorf("Source(%d).String() = %q, want %q", s, got, want)
		}
	}
}

// keys returns the object's keys in order, failing on anything but a flat
// object of strings and numbers.
func keys(t testing.TB, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var ks []string
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%q: want an object, got %v %v", line, tok, err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		ks = append(ks, k.(string))
		if _, err := dec.Token(); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		t.Fatalf("%q: unterminated object: %v %v", line, tok, err)
	}
	return ks
}

type entry struct {
	T  string  `json:"t"`
	S  string  `json:"s"`
	D  string  `json:"d"`
	ID *uint64 `json:"id"`
}

// serdeEscape is serde_json's string escaping, rune by rune.
func serdeEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

func FuzzLine(f *testing.F) {
	f.Add(uint8(0), uint64(1), []byte("hello\n"), int64(t0.UnixNano()))
	f.Add(uint8(3), uint64(0), []byte("--- sandbox started ---\n"), int64(0))
	f.Add(uint8(1), uint64(1<<63), []byte("\xff\xfe\x00hi\xc3(\x80\x1b[0m"), int64(-1))
	f.Add(uint8(2), uint64(7), []byte("\"\\<>&\u2028\x7f\t\b\f\r"), int64(1<<62))
	f.Add(uint8(0), uint64(2), []byte("\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82"), int64(1e18))
	f.Fuzz(func(t *testing.T, src uint8, session uint64, data []byte, nanos int64) {
		s := Source(src % 4)
		at := time.Unix(0, nanos)
		line := AppendLine(nil, at, s, session, data)
		if !bytes.HasSuffix(line, []byte("}\n")) || bytes.Count(line, []byte("\n")) != 1 {
			t.Fatalf("%q: want one line ending in }\\n", line)
		}
		want := []string{"t", "s", "d", "id"}
		if s == System {
			want = want[:3]
		}
		if got := keys(t, line); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%q: keys %v, want %v", line, got, want)
		}
		var e entry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if e.D != string(referenceLossy(data)) {
			t.Fatalf("%q: d = %q, want %q", line, e.D, referenceLossy(data))
		}
		if e.S != s.String() {
			t.Fatalf("%q: s = %q", line, e.S)
		}
		if (e.ID == nil) != (s == System) || e.ID != nil && *e.ID != session {
			t.Fatalf("%q: id wrong for %v session %d", line, s, session)
		}
		if want := at.UTC().Format("2006-01-02T15:04:05.000Z"); e.T != want && at.Year() >= 0 && at.Year() <= 9999 {
			t.Fatalf("%q: t = %q, want %q", line, e.T, want)
		}
		// Byte for byte what serde_json writes for the lossy string.
		if at.Year() >= 0 && at.Year() <= 9999 {
			want := `{"t":"` + at.UTC().Format("2006-01-02T15:04:05.000Z") + `","s":"` + s.String() + `","d":"` + serdeEscape(string(referenceLossy(data))) + `"`
			if s != System {
				want += `,"id":` + strconv.FormatUint(session, 10)
			}
			if want += "}\n"; string(line) != want {
				t.Fatalf("line\n%q\nwant\n%q", line, want)
			}
		}
	})
}
