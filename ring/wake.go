package ring

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// A Wake is a non-blocking, close-on-exec pipe used as a doorbell: Wake puts
// a byte in, Drain takes them all out, and the read end is what epoll or poll
// watches. Under edge-triggered epoll the reader must Drain after every
// event, so the next Wake finds the pipe empty and makes a new edge.
type Wake struct {
	r, w int
}

// wakeByte is the byte Wake writes; a package variable so writing it does not
// allocate.
var wakeByte = [1]byte{1}

// NewWake creates the pipe.
func NewWake() (*Wake, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("ring: wake pipe: %w", err)
	}
	return &Wake{r: p[0], w: p[1]}, nil
}

// Wake writes one byte. A full pipe (EAGAIN) is fine: the reader has bytes
// to drain and is therefore already due to wake.
func (w *Wake) Wake() {
	for {
		_, err := unix.Write(w.w, wakeByte[:])
		if err != unix.EINTR {
			return
		}
	}
}

// Drain reads until the pipe is empty.
func (w *Wake) Drain() {
	var buf [128]byte
	for {
		n, err := unix.Read(w.r, buf[:])
		if err == unix.EINTR {
			continue
		}
		// A short read means the pipe is empty now; saves the EAGAIN
		// round trip in the common case of one byte.
		if err != nil || n < len(buf) {
			return
		}
	}
}

// Fd returns the read end, for epoll or poll.
func (w *Wake) Fd() int { return w.r }

// Close closes both ends. Nobody may use the Wake concurrently or afterwards:
// the descriptor numbers are free for reuse, and a late Wake would write into
// whatever file got them.
func (w *Wake) Close() error {
	if w.r < 0 {
		return nil
	}
	err1 := unix.Close(w.r)
	err2 := unix.Close(w.w)
	w.r, w.w = -1, -1
	if err1 != nil {
		return fmt.Errorf("ring: close wake pipe: %w", err1)
	}
	if err2 != nil {
		return fmt.Errorf("ring: close wake pipe: %w", err2)
	}
	return nil
}
