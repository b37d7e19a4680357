package ring

import (
	"testing"

	"golang.org/x/sys/unix"
)

// readable reports whether fd polls readable within ms milliseconds.
func readable(t testing.TB, fd int, ms int) bool {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		return n > 0
	}
}

func TestWake(t *testing.T) {
	w, err := NewWake()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	fl, err := unix.FcntlInt(uintptr(w.Fd()), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("read end flags %#x, %v: want O_NONBLOCK", fl, err)
	}
	for _, fd := range []int{w.r, w.w} {
		fdfl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || fdfl&unix.FD_CLOEXEC == 0 {
			t.Errorf("fd %d: F_GETFD %#x, %v: want FD_CLOEXEC", fd, fdfl, err)
		}
	}

	if readable(t, w.Fd(), 0) {
		t.Fatal("new pipe is readable")
	}
	w.Wake()
	if !readable(t, w.Fd(), 0) {
		t.Fatal("not readable after Wake")
	}
	w.Drain()
	if readable(t, w.Fd(), 0) {
		t.Fatal("readable after Drain")
	}

	// Far more bytes than a pipe holds: Wake must neither block nor fail,
	// and Drain must empty it all.
	for range 200000 {
		w.Wake()
	}
	w.Drain()
	if readable(t, w.Fd(), 0) {
		t.Fatal("readable after draining a full pipe")
	}

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
