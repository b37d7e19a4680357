package relay

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/ring"
)

// drive feeds stream into a small ring in chunks and collects what the
// reader returns. The ring is smaller than some frames, so wrapping, staging
// and frames larger than the ring are all exercised.
func drive(t testing.TB, stream []byte, seed uint64) (frames [][]byte, skipped uint64) {
	r, err := ring.New(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	g := newGuestReader(r, false)
	g.onResync = func(n uint64) { skipped += n }
	rng := rand.New(rand.NewPCG(seed, 1))
	for len(stream) > 0 || r.Len() > 0 {
		if len(stream) > 0 {
			n := r.Write(stream[:min(len(stream), 1+rng.IntN(3000))])
			stream = stream[n:]
		}
		for {
			budget := 1 << 20
			f, ok := g.next(&budget)
			if !ok {
				break
			}
			if _, err := frame.Split(f.Raw); err != nil || len(f.Raw) > frame.MaxFrame {
				t.Fatalf("reader returned an invalid frame: %v", err)
			}
			frames = append(frames, bytes.Clone(f.Raw))
			g.done()
		}
		if len(stream) == 0 && r.Len() > 0 && g.resyncing {
			// Trailing garbage too short to judge: nothing more will come.
			break
		}
	}
	return frames, skipped
}

func validStream(seed uint64, n int) ([]byte, [][]byte) {
	rng := rand.New(rand.NewPCG(seed, 2))
	var s []byte
	var fs [][]byte
	for range n {
		size := rng.IntN(64)
		if rng.IntN(10) == 0 {
			size = rng.IntN(20000) // larger than the ring
		}
		f, _ := frame.AppendMessage(nil, rng.Uint32(), frame.TypeExecStdout, frame.ExecStdout{Data: make([]byte, size)})
		s = append(s, f...)
		fs = append(fs, f)
	}
	return s, fs
}

func TestGuestReaderValidStream(t *testing.T) {
	s, want := validStream(1, 500)
	got, skipped := drive(t, s, 7)
	if skipped != 0 || len(got) != len(want) {
		t.Fatalf("got %d frames (skipped %d), want %d", len(got), skipped, len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

func TestGuestReaderResyncAfterGarbage(t *testing.T) {
	s, want := validStream(3, 50)
	junk := bytes.Repeat([]byte{0xff}, 5000)
	stream := append(bytes.Clone(junk), s...)
	got, skipped := drive(t, stream, 9)
	if skipped != uint64(len(junk)) || len(got) != len(want) {
		t.Fatalf("skipped %d (want %d), %d frames (want %d)", skipped, len(junk), len(got), len(want))
	}
}

// FuzzGuestReader: whatever the guest sends, the reader never panics, only
// returns well-formed frames made of input bytes, and a stream of valid
// frames comes through whole.
func FuzzGuestReader(f *testing.F) {
	s, _ := validStream(5, 10)
	f.Add(s, uint64(1))
	f.Add(append([]byte{0, 0, 0, 2, 1, 2}, s...), uint64(2))
	f.Add(append(bytes.Repeat([]byte{0xfe}, 100), s...), uint64(3))
	big := binary.BigEndian.AppendUint32(nil, frame.MaxLen+1)
	f.Add(append(big, s...), uint64(4))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		got, _ := drive(t, data, seed)
		total := 0
		for _, g := range got {
			total += len(g)
		}
		if total > len(data) {
			t.Fatalf("reader returned %d bytes of frames from %d input bytes", total, len(data))
		}
		// Valid input passes through unchanged.
		if fs, err := splitAll(data); err == nil {
			if len(fs) != len(got) {
				t.Fatalf("valid stream: %d frames in, %d out", len(fs), len(got))
			}
		}
	})
}

func splitAll(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		f, err := frame.Split(b)
		if err != nil {
			return nil, err
		}
		out = append(out, f.Raw)
		b = b[len(f.Raw):]
	}
	return out, nil
}
