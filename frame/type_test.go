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
	}
	for ty := TypeUnknown; ty < numTypes; ty++ {
		if got := ty.Flags(); got != want[ty] {
			t.Errorf("%v.Flags() = %#x, want %#x", ty, got, want[ty])
		}
	}
}

func TestConstants(t *testing.T) {
	if Step != 268435455 || MaxLen != 4194304 || MaxFrame != 4194308 {
		t.Fatalf("Step %d MaxLen %d MaxFrame %d", Step, MaxLen, MaxFrame)
	}
}

func TestParseTypeDoesNotAllocate(t *testing.T) {
	b := []byte("core.exec.stdout")
	if n := testing.AllocsPerRun(100, func() { _ = ParseType(b) }); n != 0 {
		t.Fatalf("ParseType allocates %v times", n)
	}
}
