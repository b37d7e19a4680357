package ring

import (
	"testing"
	"time"
)

func BenchmarkRing64B(b *testing.B)   { benchmarkRing(b, 64) }
func BenchmarkRing64KiB(b *testing.B) { benchmarkRing(b, 64<<10) }

// benchmarkRing streams b.N chunks of the given size through a default-size
// ring, the benchmark goroutine producing and a concurrent goroutine
// consuming, both running the arm/poll protocol as the relay's event loop
// does. The consumer copies what it takes out (as the relay copies frames to
// client sockets), so both sides do comparable work. wakes/chunk counts wake
// bytes written, both directions; datawakes/chunk those to the consumer.
func benchmarkRing(b *testing.B, chunk int) {
	r := newRing(b, DefaultCapacity)
	p := make([]byte, chunk)
	total := uint64(b.N) * uint64(chunk)
	done := make(chan error, 1)
	go func() {
		var got uint64
		sink := make([]byte, 64<<10)
		for got < total {
			if n := r.CopyOut(sink); n > 0 {
				got += uint64(n)
				r.Consume(n)
				continue
			}
			if !r.ArmData() {
				continue
			}
			if err := pollSleep(r.DataFd()); err != nil {
				done <- err
				return
			}
			r.DrainData()
		}
		done <- nil
	}()

	b.SetBytes(int64(chunk))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		q := p
		for len(q) > 0 {
			n := r.Write(q)
			q = q[n:]
			if n > 0 || !r.ArmSpace() {
				continue
			}
			if err := pollSleep(r.SpaceFd()); err != nil {
				b.Fatal(err)
			}
			r.DrainSpace()
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	s := r.Stats()
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/chunk")
	b.ReportMetric(float64(s.DataWakes+s.SpaceWakes)/float64(b.N), "wakes/chunk")
	b.ReportMetric(float64(s.DataWakes)/float64(b.N), "datawakes/chunk")
}

// BenchmarkRingBlocking64KiB is the same stream through the blocking helpers
// (WriteAll, Read with a copy), as a goroutine transport uses them.
func BenchmarkRingBlocking64KiB(b *testing.B) {
	const chunk = 64 << 10
	r := newRing(b, DefaultCapacity)
	p := make([]byte, chunk)
	total := int64(b.N) * chunk
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, chunk)
		for got := int64(0); got < total; {
			n, err := r.Read(buf, time.Time{})
			if err != nil {
				done <- err
				return
			}
			got += int64(n)
		}
		done <- nil
	}()
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := r.WriteAll(p, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	s := r.Stats()
	b.ReportMetric(float64(s.DataWakes+s.SpaceWakes)/float64(b.N), "wakes/chunk")
}

// BenchmarkWake is the cost the protocol avoids per chunk: one wake byte
// written and drained.
func BenchmarkWake(b *testing.B) {
	w, err := NewWake()
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	b.ReportAllocs()
	for range b.N {
		w.Wake()
		w.Drain()
	}
}
