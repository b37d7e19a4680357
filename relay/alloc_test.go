//go:build !race

// The race detector's instrumentation allocates on its own; allocation
// counts are asserted without it (make test runs these tests both ways).

package relay

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/ring"
)

// TestZeroAllocsPerFrame drives the loop one iteration at a time on this
// goroutine and counts allocations per routed frame in steady state, on each
// guest port: a client frame read from a real socket and written to the
// guest, and a guest frame read, routed, and written to the client's socket.
func TestZeroAllocsPerFrame(t *testing.T) {
	t.Run("port=ring", func(t *testing.T) {
		c, err := ring.NewConsole(1 << 16)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b := c.Backend()
		zeroAllocs(t, Options{Console: c}, func(p []byte) { b.TryWrite(p) }, func(p []byte) int {
			if c.Rx.Len() < len(p) {
				return 0
			}
			n, _ := b.TryRead(p)
			return n
		})
	})
	t.Run("port=fd", func(t *testing.T) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		g := fds[1]
		defer unix.Close(g)
		unix.SetNonblock(g, true)
		got := 0
		zeroAllocs(t, Options{Guest: os.NewFile(uintptr(fds[0]), "guest")}, func(p []byte) { unix.Write(g, p) }, func(p []byte) int {
			n, _ := unix.Read(g, p[got:])
			if got += max(n, 0); got < len(p) {
				return 0
			}
			got = 0
			return len(p)
		})
	})
}

// zeroAllocs runs the round trips on a relay built from o; send writes guest
// bytes, recv reads a whole host→guest frame into p or returns 0.
func zeroAllocs(t *testing.T, o Options, send func([]byte), recv func(p []byte) int) {
	dir, _ := os.MkdirTemp("", "alloc")
	defer os.RemoveAll(dir)
	o.Socket = filepath.Join(dir, "s")
	r, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ready, _ := frame.AppendMessage(nil, 0, frame.TypeReady, frame.Ready{})
	send(ready)
	if err := r.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer func() { // what Run does after its loop
		r.teardown(StateStopped, "test over")
		r.l.release()
	}()

	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: r.opt.Socket}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	turn := func() {
		if err := r.loop.RunOnce(10 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	turn()
	turn()
	if n, _ := unix.Read(fd, buf); n != 4+len(ready) {
		t.Fatalf("handshake: %d bytes", n)
	}

	toGuest, _ := frame.AppendMessage(nil, 1, frame.TypeExecStdin, frame.ExecStdin{Data: make([]byte, 64)})
	toClient, _ := frame.AppendMessage(nil, 1, frame.TypeExecStdout, frame.ExecStdout{Data: make([]byte, 64)})
	in := make([]byte, len(toGuest))
	roundTrip := func() {
		unix.Write(fd, toGuest)
		for recv(in) == 0 {
			turn()
		}
		send(toClient)
		got := 0
		for got < len(toClient) {
			turn()
			n, _ := unix.Read(fd, buf[got:len(toClient)])
			if n > 0 {
				got += n
			}
		}
	}
	unix.SetNonblock(fd, true)
	for range 100 { // warm up: buffers and maps reach their steady size
		roundTrip()
	}
	if a := testing.AllocsPerRun(1000, roundTrip); a != 0 {
		t.Fatalf("%.2f allocations per round trip (one frame each way), want 0", a)
	}
	if s := r.Stats(); s.FramesToGuest < 1100 || s.FramesToClient < 1100 {
		t.Fatalf("frames not routed: %+v", s)
	}
}
