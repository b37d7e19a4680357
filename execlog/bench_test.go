package execlog

import (
	"bytes"
	"strconv"
	"testing"
	"time"
)

// BenchmarkLaneAppend is the reactor's cost per captured chunk. The writer
// goroutine drains to a real file meanwhile; what it cannot keep up with is
// dropped, and the share lost is reported.
func BenchmarkLaneAppend(b *testing.B) {
	for _, size := range []int{64, 4 << 10} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			w, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			l := w.Lane()
			chunk := bytes.Repeat([]byte("x"), size-1)
			chunk = append(chunk, '\n')
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				l.Append(Stdout, 1, chunk)
			}
			b.StopTimer()
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			s := w.Stats()
			b.ReportMetric(float64(s.LostEvents)/float64(b.N), "lost/op")
		})
	}
}

// BenchmarkLaneAppendAt is the same with the caller's cached time, as the
// reactor passes it: no clock read per chunk.
func BenchmarkLaneAppendAt(b *testing.B) {
	for _, size := range []int{64, 4 << 10} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			w, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			l := w.Lane()
			chunk := bytes.Repeat([]byte("x"), size-1)
			chunk = append(chunk, '\n')
			now := time.Now()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				l.AppendAt(now, Stdout, 1, chunk)
			}
			b.StopTimer()
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			s := w.Stats()
			b.ReportMetric(float64(s.LostEvents)/float64(b.N), "lost/op")
		})
	}
}

// BenchmarkWriterAppend is the mutex path, uncontended.
func BenchmarkWriterAppend(b *testing.B) {
	w, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 64)
	w.Append(Stdout, 1, chunk) // allocates the shared lane's ring
	b.SetBytes(64)
	b.ReportAllocs()
	for b.Loop() {
		w.Append(Stdout, 1, chunk)
	}
	b.StopTimer()
	w.Close()
	b.ReportMetric(float64(w.Stats().LostEvents)/float64(b.N), "lost/op")
}

// BenchmarkAppendLine is the writer goroutine's formatting cost.
func BenchmarkAppendLine(b *testing.B) {
	inputs := map[string][]byte{
		"ascii":   bytes.Repeat([]byte("hello world, plain output "), 160),
		"escapes": bytes.Repeat([]byte("\x1b[1;32mok\x1b[0m\t\"q\"\r\n"), 200),
		"utf8":    bytes.Repeat([]byte("héllo wörld ✓ 😀 "), 180),
		"binary":  bytes.Repeat([]byte("\xff\xfe\x00hi\xc3(\x80\x1b[0m"), 340),
	}
	for _, name := range []string{"ascii", "escapes", "utf8", "binary"} {
		data := inputs[name]
		b.Run(name, func(b *testing.B) {
			var c clock
			dst := make([]byte, 0, 8*len(data))
			now := time.Now().UnixNano()
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				dst = c.appendLine(dst[:0], now, Stdout, 1, data)
			}
		})
	}
}

// BenchmarkLanePublish is the accepted path alone: the ring is emptied
// outside the timer whenever it fills, so nothing is dropped and no writer
// goroutine competes for the cache lines.
func BenchmarkLanePublish(b *testing.B) {
	for _, size := range []int{64, 4 << 10} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			w := &Writer{now: time.Now, wake: make(chan struct{}, 1)} // no writer goroutine
			l := newLane(w, DefaultBufferSize)
			w.lanes.Store(&[]*Lane{l})
			chunk := bytes.Repeat([]byte("x"), size)
			rec := uint64(headerSize + size)
			now := time.Now()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if uint64(len(l.buf))-(l.head.Load()-l.tail.Load()) < 2*rec {
					b.StopTimer()
					for r, ok := l.peek(); ok; r, ok = l.peek() {
						l.consume(r)
					}
					b.StartTimer()
				}
				l.AppendAt(now, Stdout, 1, chunk)
			}
			if s := w.Stats(); s.LostEvents != 0 {
				b.Fatalf("lost %d", s.LostEvents)
			}
		})
	}
}
