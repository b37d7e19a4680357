package bench

import (
	"errors"
	"testing"

	"github.com/agentrelay/agentrelay/frame"
)

// stream returns n frames of size bytes under consecutive ids from first.
func stream(t testing.TB, first uint32, n, size int) []byte {
	t.Helper()
	f, err := ExactFrame(frame.TypeExecStdin, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for i := range n {
		SetID(f, first+uint32(i))
		b = append(b, f...)
	}
	return b
}

func TestCounterChunks(t *testing.T) {
	const n, size = 50, 100
	b := stream(t, 1, n, size)
	for _, chunk := range []int{1, 2, 8, 9, 10, 99, 100, 101, 777, len(b)} {
		c := Counter{Size: size, Want: NewIDs(0, frame.Step)}
		total := 0
		for p := b; len(p) > 0; {
			k := min(chunk, len(p))
			got, err := c.Feed(p[:k])
			if err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
			total += got
			p = p[k:]
		}
		if total != n || c.Frames != n {
			t.Fatalf("chunk %d: counted %d (Frames %d), want %d", chunk, total, c.Frames, n)
		}
	}
}

func TestCounterPartialFrameNotCounted(t *testing.T) {
	b := stream(t, 1, 2, 64)
	c := Counter{Size: 64, Want: NewIDs(0, frame.Step)}
	if got, err := c.Feed(b[:64+63]); err != nil || got != 1 {
		t.Fatalf("Feed = %d, %v; want 1 whole frame", got, err)
	}
	if got, err := c.Feed(b[64+63:]); err != nil || got != 1 {
		t.Fatalf("Feed = %d, %v; want the second frame completed", got, err)
	}
}

func TestCounterCatchesLostFrame(t *testing.T) {
	b := stream(t, 1, 3, 64)
	c := Counter{Size: 64, Want: NewIDs(0, frame.Step)}
	lost := append(append([]byte{}, b[:64]...), b[128:]...) // frame 2 missing
	got, err := c.Feed(lost)
	if err == nil {
		t.Fatal("a missing frame went unnoticed")
	}
	if got != 1 {
		t.Fatalf("counted %d frames before the gap, want 1", got)
	}
}

func TestCounterCatchesWrongSize(t *testing.T) {
	c := Counter{Size: 64, Want: NewIDs(0, frame.Step)}
	if _, err := c.Feed(stream(t, 1, 1, 65)); err == nil {
		t.Fatal("a 65-byte frame passed as 64")
	}
}

func TestCounterCatchesBadLength(t *testing.T) {
	c := Counter{Want: NewIDs(0, frame.Step)}
	_, err := c.Feed([]byte{0, 0, 0, 1, 0, 0, 0, 1, 0})
	if !errors.Is(err, frame.ErrTooShort) {
		t.Fatalf("len 1: %v, want ErrTooShort", err)
	}
}

func TestCounterFixedID(t *testing.T) {
	f, err := ExactFrame(frame.TypeExecStdout, 42, 80)
	if err != nil {
		t.Fatal(err)
	}
	c := Counter{Want: IDs{next: 42}, FixedID: true}
	b := append(append([]byte{}, f...), f...)
	if got, err := c.Feed(b); err != nil || got != 2 {
		t.Fatalf("Feed = %d, %v", got, err)
	}
	SetID(f, 43)
	if _, err := c.Feed(f); err == nil {
		t.Fatal("a frame of another session passed")
	}
}

func TestIDsWrap(t *testing.T) {
	ids := NewIDs(frame.Step, frame.Step) // slot 1
	if id := ids.Next(); id != frame.Step+1 {
		t.Fatalf("first id %d, want %d", id, frame.Step+1)
	}
	ids.Skip(frame.Step - 3) // to the last id of the range
	if id := ids.Next(); id != 2*frame.Step-1 {
		t.Fatalf("last id %d, want %d", id, 2*frame.Step-1)
	}
	if id := ids.Next(); id != frame.Step+1 {
		t.Fatalf("id after the last %d, want a wrap to %d", id, frame.Step+1)
	}
}

// FuzzCounter checks the counter against frame.Split on any input, chunked
// anywhere: the same frames, and an error exactly where Split finds an
// invalid length in a whole header.
func FuzzCounter(f *testing.F) {
	f.Add(stream(f, 1, 3, 64), uint8(7))
	f.Add(stream(f, 1, 2, 1000), uint8(1))
	f.Add([]byte{0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 4}, uint8(3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0}, uint8(2))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint8) {
		// Number the frames 1, 2, 3... as a client would have sent them.
		want, wantErr := 0, false
		for p := b; len(p) >= frame.HeaderSize; {
			SetID(p, uint32(want+1))
			fr, err := frame.Split(p)
			if errors.Is(err, frame.ErrIncomplete) {
				break
			}
			if err != nil {
				wantErr = true
				break
			}
			want++
			p = p[len(fr.Raw):]
		}
		c := Counter{Want: NewIDs(0, frame.Step)}
		got, gotErr := 0, false
		step := int(chunk)%32 + 1
		for p := b; len(p) > 0 && !gotErr; {
			k := min(step, len(p))
			n, err := c.Feed(p[:k])
			got += n
			gotErr = err != nil
			p = p[k:]
		}
		if got != want || gotErr != wantErr {
			t.Fatalf("counter: %d frames, error %v; Split: %d frames, error %v", got, gotErr, want, wantErr)
		}
	})
}

// Frames under id 0 (a relay's notice to the guest, echoed back) are passed
// over, however they are split, and the client's own frames still counted.
func TestCounterSkipsIDZero(t *testing.T) {
	notice := frame.AppendFrame(nil, 0, 0, make([]byte, 40))
	mine := func(id uint32) []byte { return frame.AppendFrame(nil, id, 0, make([]byte, 55)) }
	stream := append(append(append(mine(1), notice...), mine(2)...), notice...)
	stream = append(stream, mine(3)...)
	for step := 1; step <= len(stream); step++ {
		c := Counter{Size: 64, Want: NewIDs(0, frame.Step)}
		total := 0
		for p := stream; len(p) > 0; {
			k := min(step, len(p))
			n, err := c.Feed(p[:k])
			if err != nil {
				t.Fatalf("chunks of %d: %v", step, err)
			}
			total += n
			p = p[k:]
		}
		if total != 3 || c.Skipped != 2 {
			t.Fatalf("chunks of %d: %d frames counted, %d skipped; want 3 and 2", step, total, c.Skipped)
		}
	}
}
