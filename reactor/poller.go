package reactor

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// maxEvents is how many ready fds one epoll_wait can return. More ready fds
// than this are not lost: the rest stay on the kernel's ready list and come
// back from the next wait, so the value only trades syscalls against the
// size of the (preallocated) array.
const maxEvents = 256

// poller is the thin wrapper around one epoll instance. It knows nothing of
// handlers; it moves tokens in and out of epoll_event.data.
type poller struct {
	epfd   int
	events [maxEvents]unix.EpollEvent // filled by wait; lives in the Loop, so waiting allocates nothing
}

func (p *poller) open() error {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("reactor: epoll_create1: %w", err)
	}
	p.epfd = fd
	return nil
}

// add registers fd edge-triggered with tok as its epoll_event.data.
func (p *poller) add(fd int, events uint32, tok Token) error {
	ev := unix.EpollEvent{Events: events | unix.EPOLLET}
	setData(&ev, tok)
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("reactor: epoll_ctl add fd %d: %w", fd, err)
	}
	return nil
}

// mod changes fd's events, keeping tok.
func (p *poller) mod(fd int, events uint32, tok Token) error {
	ev := unix.EpollEvent{Events: events | unix.EPOLLET}
	setData(&ev, tok)
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
		return fmt.Errorf("reactor: epoll_ctl mod fd %d: %w", fd, err)
	}
	return nil
}

func (p *poller) del(fd int) error {
	// A non-nil event pointer keeps pre-2.6.9 kernels happy; it is ignored.
	var ev unix.EpollEvent
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, &ev); err != nil {
		return fmt.Errorf("reactor: epoll_ctl del fd %d: %w", fd, err)
	}
	return nil
}

// wait blocks for at most msec milliseconds (-1: forever, 0: poll) and
// returns how many entries of p.events are filled.
//
// EINTR is not an error. With no deadline (msec <= 0) the wait is simply
// retried. With a deadline it returns no events instead, so that the caller
// recomputes the timeout from its timers rather than restarting the full
// interval and firing them late.
func (p *poller) wait(msec int) (int, error) {
	for {
		n, err := unix.EpollWait(p.epfd, p.events[:], msec)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, unix.EINTR) {
			return 0, fmt.Errorf("reactor: epoll_wait: %w", err)
		}
		if msec > 0 {
			return 0, nil
		}
	}
}

func (p *poller) close() error {
	if err := unix.Close(p.epfd); err != nil {
		return fmt.Errorf("reactor: close epoll fd: %w", err)
	}
	return nil
}

// epoll_event.data is one opaque u64 that x/sys splits into Fd and Pad on
// every architecture. The kernel never looks inside it, so the token is
// stored as two halves and read back the same way, whatever the byte order.
func setData(ev *unix.EpollEvent, tok Token) {
	ev.Fd = int32(uint32(tok))
	ev.Pad = int32(uint32(tok >> 32))
}

func dataOf(ev *unix.EpollEvent) Token {
	return Token(uint32(ev.Fd)) | Token(uint32(ev.Pad))<<32
}

const epollIn = uint32(unix.EPOLLIN)
