package baseline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
	"github.com/agentrelay/agentrelay/ring"
)

// benchRelay runs a baseline relay whose guest echoes every byte it is sent,
// and returns a connected client.
func benchRelay(b *testing.B) *relaytest.Client {
	b.Helper()
	c, err := ring.NewConsole(0)
	if err != nil {
		b.Fatal(err)
	}
	sock := filepath.Join(b.TempDir(), "agent.sock")
	r, err := New(relay.Options{Socket: sock, Console: c, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	be := c.Backend()
	be.Write(relaytest.ReadyFrame(b))
	if err := r.WaitReady(context.Background()); err != nil {
		b.Fatal(err)
	}
	echoed := make(chan struct{})
	go func() {
		defer close(echoed)
		buf := make([]byte, 256<<10)
		for {
			n, err := be.Read(buf)
			if err != nil {
				return
			}
			if _, err := be.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	ran := make(chan error, 1)
	go func() { ran <- r.Run(context.Background()) }()
	b.Cleanup(func() {
		r.Stop()
		if err := <-ran; err != nil && !errors.Is(err, relay.ErrGuestClosed) {
			b.Error(err)
		}
		be.CloseRead()
		be.CloseWrite()
		<-echoed
		c.Close()
	})
	cl, err := (&relaytest.Env{Socket: sock}).DialErr(5 * time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Conn.Close() })
	return cl
}

// BenchmarkRoundTrip is one stdin frame to the guest and its echo back,
// one at a time: the latency path through both directions.
func BenchmarkRoundTrip(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(sizeName(size), func(b *testing.B) {
			cl := benchRelay(b)
			f := stdin(b, cl.ID(1), bytes.Repeat([]byte("r"), size))
			b.SetBytes(int64(len(f)))
			b.ReportAllocs()
			for b.Loop() {
				cl.Send(b, f)
				if _, err := cl.Recv(5 * time.Second); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPipelined keeps up to 32 frames in flight, written in batches:
// throughput through the channels and the per-frame reads and writes. The
// window keeps the Rx ring from filling (32 × 16 KiB < 1 MiB): a stall of
// 50 ms on a loaded machine would otherwise make the baseline drop frames,
// the original's flaw, and the benchmark wait for echoes that never come.
func BenchmarkPipelined(b *testing.B) {
	for _, size := range []int{64, 16 << 10} {
		b.Run(sizeName(size), func(b *testing.B) {
			cl := benchRelay(b)
			f := stdin(b, cl.ID(1), bytes.Repeat([]byte("p"), size))
			const window = 32
			frames := bytes.Repeat(f, window)
			credit := make(chan struct{}, window)
			for range window {
				credit <- struct{}{}
			}
			b.SetBytes(int64(len(f)))
			b.ReportAllocs()
			done := make(chan error, 1)
			n := b.N
			go func() {
				for range n {
					if _, err := cl.Recv(10 * time.Second); err != nil {
						done <- err
						return
					}
					credit <- struct{}{}
				}
				done <- nil
			}()
			b.ResetTimer()
			for i := 0; i < n; {
				k := 0
				for k < min(window, n-i) {
					<-credit
					k++
					if len(credit) == 0 {
						break
					}
				}
				if _, err := cl.Conn.Write(frames[:k*len(f)]); err != nil {
					b.Fatal(err)
				}
				i += k
			}
			if err := <-done; err != nil && !errors.Is(err, io.EOF) {
				b.Fatal(err)
			}
		})
	}
}

func sizeName(n int) string {
	if n >= 1024 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}
