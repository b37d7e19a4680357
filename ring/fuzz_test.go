package ring

import (
	"bytes"
	"testing"
)

// FuzzRing applies a random sequence of producer and consumer operations to a
// small ring and to a plain slice, and requires them to agree after every
// step. The first input byte picks the capacity (1 to 256), each further pair
// of bytes is an operation and its argument.
func FuzzRing(f *testing.F) {
	f.Add([]byte{3, 0, 5, 1, 3, 0, 7, 2, 0, 3, 4, 1, 9})
	f.Add([]byte{0, 0, 1, 0, 1, 1, 1, 2, 0})
	f.Add([]byte{4, 0, 16, 1, 10, 0, 16, 4, 12, 5, 0, 2, 0, 3, 20, 1, 255})
	f.Add([]byte{8, 0, 255, 0, 255, 1, 200, 4, 255, 0, 100, 3, 255, 1, 255})
	f.Add([]byte{2, 4, 3, 4, 3, 1, 2, 4, 3, 2, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		capacity := 1 << (in[0] % 9)
		r, err := New(capacity)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()

		var model []byte
		var next byte // the stream's next byte value
		gen := func(n int) []byte {
			p := make([]byte, n)
			for i := range p {
				p[i] = next
				next++
			}
			return p
		}
		scratch := make([]byte, 256)

		ops := in[1:]
		for i := 0; i+1 < len(ops); i += 2 {
			arg := int(ops[i+1])
			switch ops[i] % 6 {
			case 0: // write
				p := gen(arg)
				n := r.Write(p)
				if want := min(arg, capacity-len(model)); n != want {
					t.Fatalf("op %d: Write(%d) = %d, want %d", i, arg, n, want)
				}
				next -= byte(arg - n) // the rest was not taken
				model = append(model, p[:n]...)
			case 1: // consume
				n := min(arg, len(model))
				r.Consume(n)
				model = model[n:]
			case 2: // peek
				a, b := r.Peek()
				if got := r.Readable(); !bytes.Equal(got, a) {
					t.Fatalf("op %d: Readable %q != Peek's first span %q", i, got, a)
				}
				if len(b) > 0 && len(a) == 0 {
					t.Fatalf("op %d: second span without a first", i)
				}
			case 3: // copy out
				n := r.CopyOut(scratch[:arg])
				if want := min(arg, len(model)); n != want || !bytes.Equal(scratch[:n], model[:n]) {
					t.Fatalf("op %d: CopyOut(%d) = %d %q, want %q", i, arg, n, scratch[:n], model[:want])
				}
			case 4: // zero-copy write
				w := r.Writable()
				n := min(arg, len(w))
				copy(w, gen(n))
				r.Commit(n)
				model = append(model, w[:n]...)
			case 5: // arm: must refuse exactly when something is readable
				if armed := r.ArmData(); armed != (len(model) == 0) {
					t.Fatalf("op %d: ArmData = %v with %d bytes readable", i, armed, len(model))
				}
			}
			a, b := r.Peek()
			if got := append(append([]byte(nil), a...), b...); !bytes.Equal(got, model) {
				t.Fatalf("op %d: ring holds %q, model %q", i, got, model)
			}
			if r.Len() != len(model) || r.Free() != capacity-len(model) {
				t.Fatalf("op %d: Len %d Free %d, model %d of %d", i, r.Len(), r.Free(), len(model), capacity)
			}
		}
	})
}
