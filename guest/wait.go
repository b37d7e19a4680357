package guest

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/ring"
)

// errStopped is what a wait returns once its stopper fired. Callers turn it
// into ctx.Err() or into a clean end, whichever their stop meant.
var errStopped = errors.New("guest: stopped")

// A stopper lets goroutines sleep on a ring's wake pipe and still be
// interrupted: it is a second pipe, polled together with the ring's, that
// becomes readable for good when the context ends or Stop is called. Being
// level-triggered and never drained, one byte stops every present and
// future wait.
type stopper struct {
	w       *ring.Wake
	release func() bool

	// mu orders Stop after Close: the context's AfterFunc may be
	// running while Close frees the pipe, and a late Wake would write
	// into whatever file got the descriptor number.
	mu     sync.Mutex
	closed bool
}

func newStopper(ctx context.Context) (*stopper, error) {
	w, err := ring.NewWake()
	if err != nil {
		return nil, fmt.Errorf("guest: %w", err)
	}
	s := &stopper{w: w}
	s.release = context.AfterFunc(ctx, s.Stop)
	return s, nil
}

// Stop makes every wait return errStopped. It is a no-op after Close.
func (s *stopper) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.w.Wake()
	}
}

// Close frees the pipe; nobody may wait afterwards.
func (s *stopper) Close() {
	s.release()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.w.Close()
}

// wait sleeps until fd is readable or the stopper fired, and reports which
// (errStopped wins: a stopped goroutine must not go on). It does not drain
// fd; the ring's Drain method does that.
func (s *stopper) wait(fd int) error {
	fds := [2]unix.PollFd{
		{Fd: int32(fd), Events: unix.POLLIN},
		{Fd: int32(s.w.Fd()), Events: unix.POLLIN},
	}
	for {
		_, err := unix.Poll(fds[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("guest: poll: %w", err)
		}
		if fds[1].Revents != 0 {
			return errStopped
		}
		return nil
	}
}

// waitData sleeps until r may have data (or EOF) for its consumer. A false
// ArmData means there is something already, and the caller just looks again.
func (s *stopper) waitData(r *ring.Ring) error {
	if !r.ArmData() {
		return nil
	}
	if err := s.wait(r.DataFd()); err != nil {
		return err
	}
	r.DrainData()
	return nil
}

// waitSpace sleeps until r may have room for its producer.
func (s *stopper) waitSpace(r *ring.Ring) error {
	if !r.ArmSpace() {
		return nil
	}
	if err := s.wait(r.SpaceFd()); err != nil {
		return err
	}
	r.DrainSpace()
	return nil
}

// writeAll writes all of p into r, the producer's side, sleeping while r is
// full: the guest never drops. It fails with ring.ErrClosed when the relay
// stopped reading or r was closed, and errStopped when s fired.
func (s *stopper) writeAll(r *ring.Ring, p []byte) error {
	for len(p) > 0 {
		if r.ReadClosed() || r.Closed() {
			return ring.ErrClosed
		}
		if n := r.Write(p); n > 0 {
			p = p[n:]
			continue
		}
		if err := s.waitSpace(r); err != nil {
			return err
		}
	}
	return nil
}
