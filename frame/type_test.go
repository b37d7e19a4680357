package frame

import "testing"

func TestTypeStringParseRoundTrip(t *testing.T) {
	names := map[string]bool{}
	for ty := TypeReady; ty < numTypes; ty++ {
		s := ty.String()
		if names[s] {
			t.Fatalf("%q named twice", s)
		}
		names[s] = true
		if got := ParseType([]byte(s)); got != ty {
			t.Errorf("ParseType(%q) = %d, want %d", s, got, ty)
		}
		if !ty.Known() {
			t.Errorf("%v not Known", ty)
		}
	}
	for _, s := range []string{"", "unknown", "core.exec", "core.exec.stdout ", "CORE.READY", "core.exec.stdouT"} {
		if got := ParseType([]byte(s)); got != TypeUnknown {
			t.Errorf("ParseType(%q) = %v, want TypeUnknown", s, got)
		}
	}
	if TypeUnknown.Known() || Type(200).Known() || Type(200).String() != "unknown" {
		t.Error("out-of-range types must be unknown")
	}
}

func TestTypeFlags(t *testing.T) {
	want := map[Type]uint8{
		TypeShutdown:    FlagShutdown,
		TypeExecRequest: FlagSessionStart,
		TypeFsRequest:   FlagSessionStart,
		TypeExecExited:  FlagTerminal,
		TypeExecFailed:  FlagTerminal,
		TypeFsResponse:  FlagTerminal,

		TypeTCPConnect: FlagSessionStart,
		TypeTCPClosed:  FlagTerminal,
		TypeTCPFailed:  FlagTerminal,
		TypeCoreError:  FlagTerminal,
		TypePong:       FlagTerminal,
		TypeTouched:    FlagTerminal,
	}
	for ty := TypeUnknown; ty < numTypes; ty++ {
		if got := ty.Flags(); got != want[ty] {
			t.Errorf("%v.Flags() = %#x, want %#x", ty, got, want[ty])
		}
	}
}

func TestConstants(t *testing.T) {
	if Step != 268435455 || MaxLen != 4194304 || MaxFrame != 4194308 || Step05 != 33554431 {
		t.Fatalf("Step %d MaxLen %d MaxFrame %d Step05 %d", Step, MaxLen, MaxFrame, Step05)
	}
}

// TestTypeSince pins each type's generation to upstream's
// min_protocol_version.
func TestTypeSince(t *testing.T) {
	want := map[Type]uint64{
		TypeFsRequest: 2, TypeFsResponse: 2, TypeFsData: 2,
		TypeTCPConnect: 4, TypeTCPConnected: 4, TypeTCPData: 4, TypeTCPEOF: 4,
		TypeTCPClose: 4, TypeTCPClosed: 4, TypeTCPFailed: 4,
		TypeCoreError: 5,
		TypePing:      6, TypePong: 6, TypeTouch: 6, TypeTouched: 6,
		TypeBootstrap: 7,
	}
	for ty := TypeReady; ty < numTypes; ty++ {
		w, ok := want[ty]
		if !ok {
			w = 1
		}
		if got := ty.Since(); got != w || got > MaxGeneration {
			t.Errorf("%v.Since() = %d, want %d", ty, got, w)
		}
	}
	if TypeUnknown.Since() != 0 || Type(200).Since() != 0 {
		t.Error("unknown types have no generation")
	}
}

func TestParseTypeDoesNotAllocate(t *testing.T) {
	b := []byte("core.exec.stdout")
	if n := testing.AllocsPerRun(100, func() { _ = ParseType(b) }); n != 0 {
		t.Fatalf("ParseType allocates %v times", n)
	}
}
