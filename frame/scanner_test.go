package frame

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// drain takes every complete frame out of s, checking each against want.
func drain(t testing.TB, s *Scanner, want [][]byte, got int) int {
	t.Helper()
	for {
		f, err := s.Next()
		if err == ErrIncomplete {
			return got
		}
		if err != nil {
			t.Fatalf("frame %d: %v", got, err)
		}
		if got >= len(want) || !bytes.Equal(f.Raw, want[got]) {
			t.Fatalf("frame %d: got %x", got, f.Raw)
		}
		if hf, _ := Split(want[got]); f.ID != hf.ID || f.Flags != hf.Flags || !bytes.Equal(f.Body, hf.Body) {
			t.Fatalf("frame %d: header fields %+v", got, f)
		}
		got++
	}
}

// feed pushes chunk into s through Write, or through Space and Commit,
// draining whenever the buffer fills.
func feed(t testing.TB, s *Scanner, chunk []byte, direct bool, want [][]byte, got int) int {
	t.Helper()
	for len(chunk) > 0 {
		var n int
		if direct {
			n = copy(s.Space(), chunk)
			s.Commit(n)
		} else {
			var err error
			n, err = s.Write(chunk)
			if (err == ErrFull) != (n < len(chunk)) {
				t.Fatalf("Write(%d bytes) = %d, %v", len(chunk), n, err)
			}
		}
		chunk = chunk[n:]
		got = drain(t, s, want, got)
		if n == 0 && len(chunk) > 0 {
			t.Fatalf("no progress with %d bytes buffered", s.Buffered())
		}
	}
	return got
}

func vectorFrames(t testing.TB, maxLen int) (frames [][]byte, stream []byte) {
	for _, v := range loadVectors(t) {
		if len(v.frame) <= maxLen {
			frames = append(frames, v.frame)
			stream = append(stream, v.frame...)
		}
	}
	return frames, stream
}

func TestScannerEveryBoundary(t *testing.T) {
	frames, stream := vectorFrames(t, 1024)
	if len(frames) < 50 {
		t.Fatalf("only %d small vectors", len(frames))
	}
	s := NewScanner(2048) // small: forces compaction on most boundaries
	for k := 0; k <= len(stream); k++ {
		s.Reset()
		direct := k%2 == 0
		got := feed(t, s, stream[:k], direct, frames, 0)
		got = feed(t, s, stream[k:], direct, frames, got)
		if got != len(frames) || s.Buffered() != 0 {
			t.Fatalf("split at %d: %d of %d frames, %d bytes left", k, got, len(frames), s.Buffered())
		}
	}
}

func TestScannerLargeFrameBoundaries(t *testing.T) {
	frames, stream := vectorFrames(t, MaxFrame)
	big := 0
	for _, f := range frames {
		big = max(big, len(f))
	}
	if big < 64<<10 {
		t.Fatalf("largest vector only %d bytes", big)
	}
	for _, size := range []int{big, big + 1000, 0} {
		s := NewScanner(size)
		for k := 0; k <= len(stream); k += 1 + k%61 {
			s.Reset()
			got := feed(t, s, stream[:k], k%3 == 0, frames, 0)
			got = feed(t, s, stream[k:], k%3 != 0, frames, got)
			if got != len(frames) {
				t.Fatalf("size %d split %d: %d of %d frames", size, k, got, len(frames))
			}
		}
	}
}

func TestScannerRandomChunks(t *testing.T) {
	frames, stream := vectorFrames(t, MaxFrame)
	// Three passes of the stream, so frames straddle the wrap-around.
	var want [][]byte
	var all []byte
	for range 3 {
		want = append(want, frames...)
		all = append(all, stream...)
	}
	big := 0
	for _, f := range frames {
		big = max(big, len(f))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 45 {
		s := NewScanner(max(big, len(stream)/(1+iter%3)))
		got, rest := 0, all
		for len(rest) > 0 {
			n := min(len(rest), 1+rng.IntN([]int{8, 300, 70000}[iter%3]))
			got = feed(t, s, rest[:n], rng.IntN(2) == 0, want, got)
			rest = rest[n:]
		}
		if got != len(want) || s.Buffered() != 0 {
			t.Fatalf("iter %d: %d of %d frames, %d left", iter, got, len(want), s.Buffered())
		}
	}
}

func TestScannerFrameLargerThanBuffer(t *testing.T) {
	s := NewScanner(64)
	f := AppendFrame(nil, 1, 0, make([]byte, 100))
	if _, err := s.Write(f[:20]); err != nil {
		t.Fatal(err)
	}
	_, err := s.Next()
	var le *LengthError
	if !errors.As(err, &le) || !errors.Is(err, ErrTooLarge) || le.Len != 105 || le.Limit != 60 {
		t.Fatalf("%v", err)
	}
	// Exactly the buffer's size fits.
	s.Reset()
	f = AppendFrame(nil, 1, 0, make([]byte, 64-HeaderSize))
	if n, err := s.Write(f); n != 64 || err != nil {
		t.Fatal(n, err)
	}
	if g, err := s.Next(); err != nil || len(g.Raw) != 64 {
		t.Fatal(err)
	}
	if len(s.Space()) != 64 {
		t.Fatal("drained scanner has no space")
	}
}

func TestScannerCorruptStreamIsSticky(t *testing.T) {
	s := NewScanner(0)
	good := AppendFrame(nil, 9, 0, []byte{0xa0})
	s.Write(good)
	s.Write([]byte{0, 0, 0, 2, 9, 9, 9})
	if f, err := s.Next(); err != nil || f.ID != 9 {
		t.Fatal(f, err)
	}
	for range 2 {
		if _, err := s.Next(); !errors.Is(err, ErrTooShort) {
			t.Fatal(err)
		}
	}
	s.Reset()
	s.Write(good)
	if f, err := s.Next(); err != nil || f.ID != 9 {
		t.Fatal(f, err)
	}
}

func TestScannerWriteFull(t *testing.T) {
	s := NewScanner(32)
	f := AppendFrame(nil, 1, 0, make([]byte, 11)) // 20 bytes
	two := append(append([]byte{}, f...), f...)
	n, err := s.Write(two)
	if n != 32 || err != ErrFull {
		t.Fatal(n, err)
	}
	if n, err := s.Fill(bytes.NewReader(two)); n != 0 || err != ErrFull {
		t.Fatal("Fill on a full scanner:", n, err)
	}
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	// 12 bytes of the second frame are buffered after the first; the rest
	// fits once they move to the front.
	if n, err := s.Write(two[32:]); n != 8 || err != nil {
		t.Fatal(n, err)
	}
	if g, err := s.Next(); err != nil || !bytes.Equal(g.Raw, f) {
		t.Fatal(err)
	}
}

func TestScannerFill(t *testing.T) {
	frames, stream := vectorFrames(t, MaxFrame)
	s := NewScanner(0)
	r := iotest.HalfReader(iotest.OneByteReader(bytes.NewReader(stream)))
	got := 0
	for {
		_, err := s.Fill(r)
		got = drain(t, s, frames, got)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got != len(frames) {
		t.Fatalf("%d of %d", got, len(frames))
	}
}

func TestScannerCommitBeyondSpacePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	s := NewScanner(16)
	s.Commit(17)
}

func TestScannerDoesNotAllocate(t *testing.T) {
	frames, stream := vectorFrames(t, MaxFrame)
	s := NewScanner(100 << 10)
	chunk := 777
	n := testing.AllocsPerRun(20, func() {
		got := 0
		for rest := stream; len(rest) > 0; {
			k := copy(s.Space(), rest[:min(chunk, len(rest))])
			s.Commit(k)
			rest = rest[k:]
			for {
				if _, err := s.Next(); err != nil {
					break
				}
				got++
			}
		}
		if got != len(frames) {
			panic("lost frames")
		}
	})
	if n != 0 {
		t.Fatalf("scanning allocates %v times per pass", n)
	}
}
