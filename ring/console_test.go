package ring

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newConsole(t testing.TB, capacity int) *Console {
	t.Helper()
	c, err := NewConsole(capacity)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestNewConsole(t *testing.T) {
	c := newConsole(t, 0)
	if c.Tx.Cap() != DefaultCapacity || c.Rx.Cap() != DefaultCapacity {
		t.Fatalf("capacities %d %d, want %d", c.Tx.Cap(), c.Rx.Cap(), DefaultCapacity)
	}
	if c.Tx == c.Rx {
		t.Fatal("Tx and Rx are the same ring")
	}
	if b1, b2 := c.Backend(), c.Backend(); b1 != b2 {
		t.Fatal("Backend returns different values")
	}
}

// The relay writes a random stream into Rx; a guest driving the Backend
// with blocking Read/Write echoes it back through Tx; the relay reads Tx.
// The rings are small so both directions fill up and block.
func TestBackendRoundTrip(t *testing.T) {
	c := newConsole(t, 4096)
	be := c.Backend()
	const total = 8 << 20
	want := make([]byte, total)
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}

	var wg sync.WaitGroup
	wg.Go(func() { // the guest: echo until the host closes Rx
		rng := rand.New(rand.NewPCG(10, 10))
		buf := make([]byte, 10000)
		for {
			n, err := be.Read(buf[:1+rng.IntN(len(buf))])
			if n > 0 {
				if m, werr := be.Write(buf[:n]); m != n || werr != nil {
					t.Errorf("Backend.Write = %d, %v; want %d", m, werr, n)
					return
				}
			}
			if err == io.EOF {
				be.CloseWrite()
				return
			}
			if err != nil {
				t.Errorf("Backend.Read: %v", err)
				return
			}
		}
	})
	wg.Go(func() { // the relay's writing half
		rng := rand.New(rand.NewPCG(11, 11))
		for p := want; len(p) > 0; {
			n := min(1+rng.IntN(20000), len(p))
			if err := c.Rx.WriteAll(p[:n], time.Now().Add(10*time.Second)); err != nil {
				t.Errorf("Rx.WriteAll: %v", err)
				return
			}
			p = p[n:]
		}
		c.Rx.CloseWrite()
	})

	got := make([]byte, 0, total)
	buf := make([]byte, 7000)
	for {
		n, err := c.Tx.Read(buf, time.Now().Add(10*time.Second))
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Tx.Read after %d bytes: %v", len(got), err)
		}
	}
	wg.Wait()
	if !bytes.Equal(got, want) {
		t.Fatalf("echoed %d bytes, differing from the %d sent", len(got), len(want))
	}
}

func TestBackendTry(t *testing.T) {
	c := newConsole(t, 8)
	be := c.Backend()
	buf := make([]byte, 16)
	if n, err := be.TryRead(buf); n != 0 || err != nil {
		t.Fatalf("TryRead on empty Rx = %d, %v; want 0, nil", n, err)
	}
	c.Rx.Write([]byte("hi"))
	if n, err := be.TryRead(buf); n != 2 || err != nil || string(buf[:2]) != "hi" {
		t.Fatalf("TryRead = %d %q, %v", n, buf[:n], err)
	}
	c.Rx.CloseWrite()
	if n, err := be.TryRead(buf); n != 0 || err != io.EOF {
		t.Fatalf("TryRead after Rx.CloseWrite = %d, %v; want io.EOF", n, err)
	}

	if n, err := be.TryWrite([]byte("0123456789")); n != 8 || err != nil {
		t.Fatalf("TryWrite of 10 into 8 = %d, %v", n, err)
	}
	if n, err := be.TryWrite([]byte("x")); n != 0 || err != nil {
		t.Fatalf("TryWrite into a full Tx = %d, %v; want 0, nil", n, err)
	}
	c.Tx.CloseRead() // the relay is gone
	if _, err := be.TryWrite([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("TryWrite after Tx.CloseRead: %v, want ErrClosed", err)
	}
	if _, err := be.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Tx.CloseRead: %v, want ErrClosed", err)
	}
}

// A Backend whose relay stops reading mid-write fails instead of blocking
// forever; one whose guest stops reading makes the relay's writes fail.
func TestBackendClose(t *testing.T) {
	c := newConsole(t, 8)
	be := c.Backend()
	done := make(chan error, 1)
	go func() {
		_, err := be.Write(make([]byte, 100))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Tx.CloseRead()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Backend.Write after Tx.CloseRead: %v", err)
	}

	go func() {
		_, err := be.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	be.CloseRead()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Backend.Read after CloseRead: %v", err)
	}
	if err := c.Rx.WriteAll([]byte("x"), time.Time{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Rx.WriteAll after Backend.CloseRead: %v", err)
	}
}

// An embedding VMM's own poll loop: one thread, non-blocking calls, sleeping
// on ReadFd and WriteFd with the arm/recheck protocol. It echoes Rx into Tx.
func TestBackendPollLoop(t *testing.T) {
	c := newConsole(t, 1024)
	be := c.Backend()
	const total = 4 << 20
	want := make([]byte, total)
	for i := range want {
		want[i] = byte(i * 7)
	}

	loopErr := make(chan error, 1)
	go func() {
		var pending []byte // read from Rx, not yet in Tx
		buf := make([]byte, 3000)
		eof := false
		for {
			progress := false
			if len(pending) > 0 {
				n, err := be.TryWrite(pending)
				if err != nil {
					loopErr <- err
					return
				}
				pending = pending[n:]
				progress = progress || n > 0
			}
			if len(pending) == 0 && !eof {
				n, err := be.TryRead(buf)
				if err == io.EOF {
					eof = true
				} else if err != nil {
					loopErr <- err
					return
				}
				pending = buf[:n]
				progress = progress || n > 0
			}
			if eof && len(pending) == 0 {
				be.CloseWrite()
				loopErr <- nil
				return
			}
			if progress {
				continue
			}
			// Nothing moved: sleep on whatever we are waiting for.
			var fds []unix.PollFd
			if len(pending) > 0 {
				if !be.ArmWrite() {
					continue
				}
				fds = append(fds, unix.PollFd{Fd: int32(be.WriteFd()), Events: unix.POLLIN})
			} else {
				if !be.ArmRead() {
					continue
				}
				fds = append(fds, unix.PollFd{Fd: int32(be.ReadFd()), Events: unix.POLLIN})
			}
			n, err := unix.Poll(fds, 10_000)
			if err != nil && err != unix.EINTR {
				loopErr <- err
				return
			}
			if n == 0 && err == nil {
				loopErr <- errors.New("lost wake-up in the VMM loop")
				return
			}
			be.DrainRead()
			be.DrainWrite()
		}
	}()

	go func() {
		if err := c.Rx.WriteAll(want, time.Now().Add(20*time.Second)); err != nil {
			t.Errorf("Rx.WriteAll: %v", err)
		}
		c.Rx.CloseWrite()
	}()

	got := make([]byte, 0, total)
	buf := make([]byte, 5000)
	for {
		n, err := c.Tx.Read(buf, time.Now().Add(20*time.Second))
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Tx.Read after %d bytes: %v", len(got), err)
		}
	}
	if err := <-loopErr; err != nil {
		t.Fatalf("VMM loop: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echoed %d bytes, differing from the %d sent", len(got), len(want))
	}
}
