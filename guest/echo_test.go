package guest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/ring"
)

// randomFrames builds n frames with random ids, flags and bodies of up to
// maxBody bytes (Echo does not look inside, so bodies need not be CBOR).
func randomFrames(rng *rand.Rand, n, maxBody int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		body := make([]byte, rng.IntN(maxBody+1))
		for j := range body {
			body[j] = byte(rng.Uint32())
		}
		out[i] = frame.AppendFrame(nil, rng.Uint32(), uint8(rng.IntN(8)), body)
	}
	return out
}

func TestEchoReflectsFrames(t *testing.T) {
	for _, tc := range []struct {
		name     string
		capacity int
		frames   int
		maxBody  int
	}{
		{"default ring", 0, 2000, 8 << 10},
		{"4KiB ring", 4 << 10, 1000, 16 << 10}, // frames larger than the ring
		{"4KiB ring small frames", 4 << 10, 5000, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConsole(t, tc.capacity)
			defer c.Close()
			rng := rand.New(rand.NewPCG(1, uint64(tc.capacity)))
			frames := randomFrames(rng, tc.frames, tc.maxBody)
			want := DefaultReady()
			for _, f := range frames {
				want = append(want, f...)
			}

			done := make(chan error, 1)
			go func() { done <- Echo(context.Background(), c, nil) }()

			// Host writer: random-sized pieces, so frames straddle writes.
			// Joined before the deferred Close: CloseWrite's wake-up may
			// still be in flight after Echo has seen EOF.
			wrote := make(chan struct{})
			defer func() { <-wrote }()
			go func() {
				defer close(wrote)
				var all []byte
				for _, f := range frames {
					all = append(all, f...)
				}
				for len(all) > 0 {
					n := min(len(all), 1+rng.IntN(3*tc.maxBody/2+1))
					if err := c.Rx.WriteAll(all[:n], time.Now().Add(20*time.Second)); err != nil {
						t.Error(err)
						return
					}
					all = all[n:]
				}
				c.Rx.CloseWrite()
			}()

			got, err := io.ReadAll(readerFunc(func(p []byte) (int, error) {
				return c.Tx.Read(p, time.Now().Add(20*time.Second))
			}))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("reflected %d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
			if err := <-done; err != nil {
				t.Fatalf("Echo: %v", err)
			}
			if tc.capacity == 4<<10 && c.Tx.Stats().SpaceWakes == 0 {
				t.Error("a 4 KiB Tx never filled up: the test did not exercise the wait for space")
			}
		})
	}
}

func TestEchoStopsOnContext(t *testing.T) {
	t.Run("waiting for data", func(t *testing.T) {
		c := newConsole(t, 4<<10)
		defer c.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Echo(ctx, c, nil) }()
		buf := make([]byte, 4096)
		if _, err := c.Tx.Read(buf, time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Echo: %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Echo did not return after cancel")
		}
		if !c.Tx.Closed() || !c.Rx.ReadClosed() {
			t.Error("Echo did not end its side of the console")
		}
	})
	t.Run("waiting for space", func(t *testing.T) {
		c := newConsole(t, 4<<10)
		defer c.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Echo(ctx, c, nil) }()
		// Nobody reads Tx: after 8 KiB Echo is stuck on a full Tx.
		f := frame.AppendFrame(nil, 1, 0, make([]byte, 1000))
		for range 8 {
			if err := c.Rx.WriteAll(f, time.Now().Add(5*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
		if st := c.Tx.Stats(); st.Written-st.Consumed != uint64(c.Tx.Cap()) {
			t.Fatalf("Tx holds %d bytes, want a full ring", st.Written-st.Consumed)
		}
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Echo: %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Echo did not return after cancel")
		}
	})
}

func TestEchoRelayStopsReading(t *testing.T) {
	c := newConsole(t, 4<<10)
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- Echo(context.Background(), c, nil) }()
	f := frame.AppendFrame(nil, 1, 0, make([]byte, 1000))
	for range 8 {
		c.Rx.WriteAll(f, time.Now().Add(5*time.Second))
	}
	c.Tx.CloseRead()
	select {
	case err := <-done:
		if !errors.Is(err, ring.ErrClosed) {
			t.Fatalf("Echo: %v, want ring.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Echo did not notice the relay stopped reading")
	}
}

func TestDefaultReady(t *testing.T) {
	m, err := frame.Decode(DefaultReady())
	if err != nil {
		t.Fatal(err)
	}
	var r frame.Ready
	if err := m.Into(&r); err != nil {
		t.Fatal(err)
	}
	if m.Type != frame.TypeReady || m.ID != 0 || r.BootTimeNs == 0 || r.ReadyTimeNs < r.BootTimeNs {
		t.Fatalf("DefaultReady: %+v %+v", m, r)
	}
}

// BenchmarkEcho measures a round trip through Echo: the benchmark writes
// 4 KiB frames into Rx and reads them back from Tx.
func BenchmarkEcho(b *testing.B) {
	for _, size := range []int{64, 4 << 10, 64 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			c, err := ring.NewConsole(0)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- Echo(ctx, c, nil) }()
			ready := make([]byte, len(DefaultReady()))
			if _, err := io.ReadFull(readerFunc(func(p []byte) (int, error) { return c.Tx.Read(p, time.Time{}) }), ready); err != nil {
				b.Fatal(err)
			}
			f := frame.AppendFrame(nil, 7, 0, make([]byte, size-frame.HeaderSize))
			batch := bytes.Repeat(f, max(1, (256<<10)/len(f)))
			perBatch := len(batch) / len(f)
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(f)))
			b.ReportAllocs()
			b.ResetTimer()
			var pending int
			for sent := 0; sent < b.N; sent += perBatch {
				if err := c.Rx.WriteAll(batch, time.Time{}); err != nil {
					b.Fatal(err)
				}
				pending += len(batch)
				for pending > len(batch) {
					n, err := c.Tx.Read(buf, time.Time{})
					if err != nil {
						b.Fatal(err)
					}
					pending -= n
				}
			}
			for pending > 0 {
				n, err := c.Tx.Read(buf, time.Time{})
				if err != nil {
					b.Fatal(err)
				}
				pending -= n
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
			cancel()
			<-done
		})
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return itoa(n>>20) + "MiB"
	case n >= 1<<10:
		return itoa(n>>10) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
