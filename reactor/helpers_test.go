package reactor

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// handlerFunc adapts a func to Handler. A func value converts to an
// interface without allocating.
type handlerFunc func(events uint32)

func (f handlerFunc) OnEvent(events uint32) { f(events) }

func newLoop(t testing.TB) *Loop {
	t.Helper()
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l
}

// pipe returns a non-blocking pipe closed at the end of the test (closing
// an fd the test already closed is harmless only if the number was not
// reused, so tests that close early set the field to -1).
type pipeFds struct{ r, w int }

func newPipe(t testing.TB) *pipeFds {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	fds := &pipeFds{p[0], p[1]}
	t.Cleanup(func() {
		if fds.r >= 0 {
			unix.Close(fds.r)
		}
		if fds.w >= 0 {
			unix.Close(fds.w)
		}
	})
	return fds
}

func newSocketpair(t testing.TB) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Close(fds[0])
		unix.Close(fds[1])
	})
	return fds[0], fds[1]
}

func mustWrite(t testing.TB, fd int, p []byte) {
	t.Helper()
	if n, err := unix.Write(fd, p); err != nil || n != len(p) {
		t.Fatalf("write fd %d: n=%d err=%v", fd, n, err)
	}
}

// drain reads fd until EAGAIN, as an edge-triggered handler must, and
// returns how many bytes it read.
func drain(fd int, buf []byte) int {
	total := 0
	for {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			total += n
		}
		if err != nil || n <= 0 {
			return total
		}
	}
}

// runUntil drives the loop one iteration at a time until cond holds.
func runUntil(t testing.TB, l *Loop, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		if err := l.RunOnce(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
}

// startRun runs l.Run on its own goroutine and returns a func that stops
// it and returns Run's error.
func startRun(t testing.TB, l *Loop) (stop func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	return func() error {
		l.Stop()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return 10s after Stop")
			return nil
		}
	}
}
