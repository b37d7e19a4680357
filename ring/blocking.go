package ring

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// WriteAll writes all of p, sleeping in poll on SpaceFd while the ring is
// full. It is the producer's helper for goroutines that may block; an event
// loop uses Write and ArmSpace instead. A zero deadline means none; when it
// passes, WriteAll returns an error wrapping os.ErrDeadlineExceeded. It
// fails with ErrClosed if the consumer is gone or the stream was closed.
func (r *Ring) WriteAll(p []byte, deadline time.Time) error {
	_, err := r.writeAll(p, deadline)
	return err
}

func (r *Ring) writeAll(p []byte, deadline time.Time) (int, error) {
	done := 0
	for done < len(p) {
		if r.rclosed.Load() || r.wclosed.Load() {
			return done, ErrClosed
		}
		if n := r.Write(p[done:]); n > 0 {
			done += n
			continue
		}
		if !r.ArmSpace() {
			continue
		}
		if err := wait(r.space, deadline); err != nil {
			r.spaceWaiting.Store(0)
			return done, fmt.Errorf("ring: write: %w", err)
		}
	}
	return done, nil
}

// Read copies up to len(p) readable bytes into p and consumes them, sleeping
// in poll on DataFd while the ring is empty. It is the consumer's helper for
// goroutines that may block; an event loop uses Readable and ArmData
// instead. It returns io.EOF once the producer has called CloseWrite and
// everything before has been read, and ErrClosed after CloseRead. A zero
// deadline means none; when it passes, Read returns an error wrapping
// os.ErrDeadlineExceeded.
func (r *Ring) Read(p []byte, deadline time.Time) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := r.TryRead(p)
		if n > 0 || err != nil {
			return n, err
		}
		if !r.ArmData() {
			continue
		}
		if err := wait(r.data, deadline); err != nil {
			r.dataWaiting.Store(0)
			return 0, fmt.Errorf("ring: read: %w", err)
		}
	}
}

// TryRead is Read without the sleeping: 0, nil means nothing is readable yet.
func (r *Ring) TryRead(p []byte) (int, error) {
	if r.rclosed.Load() {
		return 0, ErrClosed
	}
	// Closed is loaded before the data: CloseWrite comes after the
	// producer's last Write, so if it is seen, all the data is seen too.
	closed := r.wclosed.Load()
	if n := r.CopyOut(p); n > 0 {
		r.Consume(n)
		return n, nil
	}
	if closed {
		return 0, io.EOF
	}
	return 0, nil
}

// wait sleeps in poll until w's pipe is readable or the deadline passes, and
// drains the pipe after a wake-up. The caller re-checks the ring either way.
func wait(w *Wake, deadline time.Time) error {
	fds := [1]unix.PollFd{{Fd: int32(w.Fd()), Events: unix.POLLIN}}
	for {
		timeout := -1
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return os.ErrDeadlineExceeded
			}
			// Round up so poll does not return a millisecond early
			// and spin.
			timeout = int((d + time.Millisecond - 1) / time.Millisecond)
		}
		n, err := unix.Poll(fds[:], timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n == 0 {
			continue // timed out: the loop turns it into ErrDeadlineExceeded
		}
		w.Drain()
		return nil
	}
}
