package guest

import (
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	long := "/" + strings.Repeat("a", 107)
	for _, tc := range []struct {
		in   string
		want Spec
		err  string // substring of the error; "" means success
	}{
		{"echo", Spec{Kind: KindEcho}, ""},
		{"builtin", Spec{Kind: KindBuiltin}, ""},
		{"unix:/run/vm/console.sock", Spec{Kind: KindUnix, Path: "/run/vm/console.sock"}, ""},
		{"unix:relative.sock", Spec{Kind: KindUnix, Path: "relative.sock"}, ""},
		{"unix:/odd:path", Spec{Kind: KindUnix, Path: "/odd:path"}, ""},
		{"vsock:/run/fc/v.sock:1024", Spec{Kind: KindVsock, Path: "/run/fc/v.sock", Port: 1024}, ""},
		{"vsock:/a:b/v.sock:52", Spec{Kind: KindVsock, Path: "/a:b/v.sock", Port: 52}, ""},
		{"vsock:/v.sock:0", Spec{Kind: KindVsock, Path: "/v.sock", Port: 0}, ""},
		{"vsock:/v.sock:4294967294", Spec{Kind: KindVsock, Path: "/v.sock", Port: 4294967294}, ""},
		{"", Spec{}, "empty spec"},
		{"Echo", Spec{}, "unknown kind"},
		{"echo:", Spec{}, "takes no argument"},
		{"builtin:x", Spec{}, "takes no argument"},
		{"tcp:1.2.3.4:5", Spec{}, "unknown kind"},
		{"unix:", Spec{}, "empty socket path"},
		{"unix:" + long, Spec{}, "longer than"},
		{"unix:/a\x00b", Spec{}, "NUL"},
		{"vsock:/v.sock", Spec{}, "want vsock:PATH:PORT"},
		{"vsock:1024", Spec{}, "want vsock:PATH:PORT"},
		{"vsock::1024", Spec{}, "empty socket path"},
		{"vsock:/v.sock:", Spec{}, "missing vsock port"},
		{"vsock:/v.sock:-1", Spec{}, "not a decimal"},
		{"vsock:/v.sock:+1", Spec{}, "not a decimal"},
		{"vsock:/v.sock:0x10", Spec{}, "not a decimal"},
		{"vsock:/v.sock: 1", Spec{}, "not a decimal"},
		{"vsock:/v.sock:4294967295", Spec{}, "out of range"},
		{"vsock:/v.sock:99999999999", Spec{}, "out of range"},
	} {
		got, err := ParseSpec(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if s := got.String(); s != tc.in {
				t.Errorf("ParseSpec(%q).String() = %q", tc.in, s)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseSpec(%q) = %+v, %v; want an error about %q", tc.in, got, err, tc.err)
		}
	}
}
