package execlog

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// TestMaxLineSize: no chunk makes a line longer than MaxLineSize says, and
// the worst cases come close to it.
func TestMaxLineSize(t *testing.T) {
	t0 := time.Date(2026, 4, 30, 20, 32, 59, 688e6, time.UTC)
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"control", bytes.Repeat([]byte{1}, 4096)},
		{"invalid", bytes.Repeat([]byte{0xff}, 4096)},
		{"quotes", bytes.Repeat([]byte{'"'}, 4096)},
		{"text", bytes.Repeat([]byte("héllo "), 700)},
		{"empty", nil},
	} {
		for _, s := range []Source{Stdout, Stderr, Output, System} {
			n := len(AppendLine(nil, t0, s, ^uint64(0), c.data))
			if max := MaxLineSize(len(c.data)); n > max {
				t.Errorf("%s/%v: line of %d bytes, MaxLineSize says %d", c.name, s, n, max)
			}
		}
	}
}

// TestBigChunkOneBuffer: formatting the largest chunk a lane holds, every
// byte escaped, allocates about one line's worth, not a trail of ever larger
// buffers (appending piecemeal allocated some five times the line), and
// MemoryBound covers it.
func TestBigChunkOneBuffer(t *testing.T) {
	w, err := Open(t.TempDir(), Options{BufferSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	l := w.Lane()
	chunk := bytes.Repeat([]byte{1}, 1<<19-headerSize) // the most one record holds
	if b := w.MemoryBound(1); b < 1<<20+int64(MaxLineSize(len(chunk))) {
		t.Fatalf("MemoryBound(1) = %d, below a lane and one maximal line", b)
	}
	wait := func(lines uint64) {
		deadline := time.Now().Add(10 * time.Second)
		for w.Stats().Lines < lines {
			if time.Now().After(deadline) {
				t.Fatalf("exec.log has %d lines, want %d", w.Stats().Lines, lines)
			}
			time.Sleep(time.Millisecond)
		}
	}
	l.Append(Stdout, 1, []byte("warm up\n"))
	wait(1)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	l.Append(Stdout, 1, chunk)
	wait(2)
	runtime.ReadMemStats(&m1)
	if got, line := m1.TotalAlloc-m0.TotalAlloc, uint64(MaxLineSize(len(chunk))); got > 3*line { // 2 under -race, which allocates slices.Grow's zeroes too
		t.Fatalf("formatting a %d-byte chunk allocated %d bytes; one line is at most %d", len(chunk), got, line)
	}
}
