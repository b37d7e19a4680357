package baseline

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/ring"
)

// feed appends chunk as if fill had read it.
func (s *stream) feed(chunk []byte) {
	s.compact()
	s.buf = append(s.buf, chunk...)
}

// drain takes every frame next gives now.
func (s *stream) drain() [][]byte {
	var out [][]byte
	for {
		f, ok := s.next()
		if !ok {
			return out
		}
		out = append(out, f)
	}
}

func testFrame(t testing.TB, id uint32, data string) []byte {
	t.Helper()
	f, err := frame.AppendMessage(nil, id, frame.TypeExecStdout, frame.ExecStdout{Data: []byte(data)})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// badLen is a frame-sized run of bytes whose len field is n.
func badLen(n uint32, rest int) []byte {
	b := binary.BigEndian.AppendUint32(nil, n)
	return append(b, bytes.Repeat([]byte{0xee}, rest)...)
}

func TestStreamByteAtATime(t *testing.T) {
	want := [][]byte{testFrame(t, 1, "a"), testFrame(t, 2, ""), testFrame(t, 3, string(bytes.Repeat([]byte("z"), 70000)))}
	all := bytes.Join(want, nil)
	var s stream
	var got [][]byte
	for i := range all {
		s.feed(all[i : i+1])
		got = append(got, s.drain()...)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if s.buffered() != 0 || s.incidents != 0 {
		t.Fatalf("buffered %d, incidents %d", s.buffered(), s.incidents)
	}
}

// Frames are copies: reusing the buffer must not change them.
func TestStreamFramesAreOwned(t *testing.T) {
	f := testFrame(t, 9, "mine")
	var s stream
	s.feed(f)
	got, ok := s.next()
	if !ok {
		t.Fatal("no frame")
	}
	s.feed(bytes.Repeat([]byte{0xff}, len(f)))
	if !bytes.Equal(got, f) {
		t.Fatal("frame changed when the buffer was reused")
	}
}

// 0.4.4: a len field above 4 MiB clears everything buffered, good frames
// after it included; framing restarts with the next bytes read.
func TestStreamTooLargeClearsBuffer(t *testing.T) {
	good := testFrame(t, 1, "lost")
	var s stream
	s.feed(append(badLen(frame.MaxLen+1, 3), good...))
	if got := s.drain(); len(got) != 0 {
		t.Fatalf("got %d frames from a cleared buffer", len(got))
	}
	if s.buffered() != 0 || s.incidents != 1 || s.skipped != uint64(7+len(good)) {
		t.Fatalf("buffered %d incidents %d skipped %d", s.buffered(), s.incidents, s.skipped)
	}
	after := testFrame(t, 2, "after")
	s.feed(after)
	if got := s.drain(); len(got) != 1 || !bytes.Equal(got[0], after) {
		t.Fatalf("after the clear: %x", got)
	}
}

// 0.4.4: a len field below 5 waits for its bytes, discards them, and ends
// extraction for this wake-up; the frame behind it waits for the next.
func TestStreamTooShortStopsExtraction(t *testing.T) {
	good := testFrame(t, 1, "waits")
	var s stream
	s.feed(badLen(2, 1)) // len 2: 2 bytes must follow
	if got := s.drain(); len(got) != 0 || s.incidents != 0 {
		t.Fatalf("a short frame was judged before its bytes were in")
	}
	s.feed(append([]byte{0xee}, good...))
	if got := s.drain(); len(got) != 0 {
		t.Fatalf("extraction went on past a too-short frame: %x", got)
	}
	if s.incidents != 1 || s.skipped != 6 || s.buffered() != len(good) {
		t.Fatalf("incidents %d skipped %d buffered %d", s.incidents, s.skipped, s.buffered())
	}
	if got := s.drain(); len(got) != 1 || !bytes.Equal(got[0], good) {
		t.Fatalf("next wake-up: %x", got)
	}
}

func TestStreamFillReadsEverything(t *testing.T) {
	r, err := ring.New(1 << 16)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var want [][]byte
	for i := range 100 {
		f := testFrame(t, uint32(i), string(bytes.Repeat([]byte{'x'}, i*5)))
		if r.Write(f) != len(f) {
			t.Fatal("ring full")
		}
		want = append(want, f)
	}
	var s stream
	if err := s.fill(r); err != nil {
		t.Fatal(err)
	}
	got := s.drain()
	if len(got) != len(want) {
		t.Fatalf("one fill gave %d frames, want %d", len(got), len(want))
	}
	r.CloseWrite()
	if err := s.fill(r); err != io.EOF {
		t.Fatalf("fill after CloseWrite = %v, want io.EOF", err)
	}
}

// FuzzStream feeds arbitrary bytes in arbitrary chunks. Every frame out is
// well-formed and a byte-exact piece of the input; every input byte is
// accounted for as a frame, skipped, or still buffered; and input made only
// of valid frames comes out whole whatever the chunking.
func FuzzStream(f *testing.F) {
	one := testFrame(f, 1, "hello")
	two := testFrame(f, frame.Step+7, "")
	f.Add(append(bytes.Clone(one), two...), uint8(3))
	f.Add(append(badLen(3, 3), one...), uint8(1))
	f.Add(append(badLen(frame.MaxLen+1, 0), one...), uint8(200))
	f.Add(badLen(0, 0), uint8(0))
	f.Add([]byte{0, 0}, uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		step := int(chunk)%64 + 1
		var s stream
		var out, fed int
		var got [][]byte
		for i := 0; i < len(in); i += step {
			s.feed(in[i:min(i+step, len(in))])
			fed = min(i+step, len(in))
			for _, f := range s.drain() {
				n := binary.BigEndian.Uint32(f)
				if int(n)+frame.LenSize != len(f) || n < frame.MinLen || n > frame.MaxLen {
					t.Fatalf("malformed frame out: len field %d, %d bytes", n, len(f))
				}
				if !bytes.Contains(in, f) {
					t.Fatal("frame is not a piece of the input")
				}
				out += len(f)
				got = append(got, f)
			}
			if uint64(out)+s.skipped+uint64(s.buffered()) != uint64(fed) {
				t.Fatalf("bytes unaccounted for: out %d skipped %d buffered %d fed %d", out, s.skipped, s.buffered(), fed)
			}
		}
		if s.incidents == 0 && s.buffered() == 0 && !bytes.Equal(bytes.Join(got, nil), in) {
			t.Fatal("clean input did not come out whole")
		}
	})
}

// One allocation per frame, as the original's per-frame buffer: the cost
// the benchmarks hold the reactor against.
func TestAllocsPerGuestFrame(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	f := testFrame(t, 1, "sixteen bytes...")
	var s stream
	s.feed(bytes.Repeat(f, 1000))
	allocs := testing.AllocsPerRun(500, func() {
		if _, ok := s.next(); !ok {
			t.Fatal("ran out of frames")
		}
	})
	if allocs != 1 {
		t.Fatalf("%v allocations per frame, want 1", allocs)
	}
}
