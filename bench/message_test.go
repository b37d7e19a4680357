package bench

import (
	"bytes"
	"testing"

	"github.com/agentrelay/agentrelay/frame"
)

func TestExactFrame(t *testing.T) {
	for _, typ := range []frame.Type{frame.TypeExecStdin, frame.TypeExecStdout} {
		// The workloads' sizes, then every size across the CBOR length-head
		// boundaries (24, 256, 65536). Where a head grows by a byte, one
		// size cannot be made with minimal heads, at 65536 (a 5-byte
		// head) up to four: allow that many misses.
		for _, w := range Workloads {
			if _, err := ExactFrame(typ, 7, w.Size); err != nil {
				t.Fatalf("workload %s: %v", w.Name, err)
			}
		}
		var sizes []int
		for s := 60; s < 400; s++ {
			sizes = append(sizes, s)
		}
		for s := 65500; s < 65600; s++ {
			sizes = append(sizes, s)
		}
		misses := 0
		for _, size := range sizes {
			f, err := ExactFrame(typ, 7, size)
			if err != nil {
				if misses++; misses > 8 {
					t.Fatalf("%s, %d bytes: %v (miss %d)", typ, size, err, misses)
				}
				continue
			}
			if len(f) != size {
				t.Fatalf("%s: asked %d bytes, got %d", typ, size, len(f))
			}
			m, err := frame.Decode(f)
			if err != nil {
				t.Fatalf("%s, %d bytes: does not decode: %v", typ, size, err)
			}
			if m.Type != typ || m.ID != 7 || m.Flags != typ.Flags() {
				t.Fatalf("%d bytes: decoded %s id %d flags %#x", size, m.TypeName, m.ID, m.Flags)
			}
			var p frame.ExecStdin
			if err := m.Into(&p); err != nil || bytes.Count(p.Data, []byte{0}) == len(p.Data) && len(p.Data) > 1 {
				t.Fatalf("%d bytes: payload %v, data all zero", size, err)
			}
		}
	}
}

func TestExactFrameTooSmall(t *testing.T) {
	if _, err := ExactFrame(frame.TypeExecStdin, 1, 20); err == nil {
		t.Fatal("a 20-byte message was made")
	}
}

func TestSetID(t *testing.T) {
	f, err := ExactFrame(frame.TypeExecStdin, 1, 64)
	if err != nil {
		t.Fatal(err)
	}
	SetID(f, 0xdeadbeef)
	if fr, err := frame.Split(f); err != nil || fr.ID != 0xdeadbeef {
		t.Fatalf("Split = %+v, %v", fr.ID, err)
	}
}
