package reactor

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// wake is how other goroutines reach a loop that may be blocked in
// epoll_wait: an eventfd registered in the loop's epoll set, written only
// when the loop has announced that it is about to sleep.
//
// The handshake is the one the Go runtime uses for netpollBreak, plus a
// "sleeping" flag so that a busy loop costs its submitters no syscall:
//
//	loop:      sleeping = 1; if work is pending { don't block }; epoll_wait; sleeping = 0
//	submitter: publish work;  if CAS(sleeping, 1, 0) { write eventfd }
//
// Both sides store before they load (sequentially consistent atomics), so
// either the loop sees the work before it blocks or the submitter sees the
// flag and wakes it. The CAS makes one submitter pay for the write per sleep.
type wake struct {
	fd       int
	sleeping atomic.Uint32
	buf      [8]byte // drain target; a field so reading it allocates nothing

	// mu orders a write of the eventfd against Close: a submitter that won
	// the CAS just as the loop gave up waiting must not write to an fd
	// number that Close has released and the process may have reused.
	mu     sync.RWMutex
	closed bool
}

// wakeOne is the eventfd increment, a native-endian u64 1.
var wakeOne = func() (b [8]byte) {
	binary.NativeEndian.PutUint64(b[:], 1)
	return
}()

func (w *wake) open() error {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("reactor: eventfd: %w", err)
	}
	w.fd = fd
	return nil
}

// poke wakes the loop if, and only if, it may be asleep.
func (w *wake) poke() {
	if !w.sleeping.CompareAndSwap(1, 0) {
		return
	}
	w.mu.RLock()
	if !w.closed {
		// EAGAIN means the counter is saturated, i.e. already readable: the
		// wakeup is pending either way.
		_, _ = unix.Write(w.fd, wakeOne[:])
	}
	w.mu.RUnlock()
}

// drain resets the eventfd counter so its next write is a fresh edge.
func (w *wake) drain() {
	_, _ = unix.Read(w.fd, w.buf[:])
}

func (w *wake) close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	if err := unix.Close(w.fd); err != nil {
		return fmt.Errorf("reactor: close eventfd: %w", err)
	}
	return nil
}

// queue is a lock-free multi-producer single-consumer queue of funcs: a
// Treiber stack that producers push onto and the loop takes whole with one
// Swap, then reverses to recover submission order. Taking the whole stack
// means the consumer never pops single nodes, so there is no ABA problem.
type queue struct {
	head atomic.Pointer[node]
}

type node struct {
	f    func()
	next *node
}

func (q *queue) push(f func()) {
	n := &node{f: f}
	for {
		old := q.head.Load()
		n.next = old
		if q.head.CompareAndSwap(old, n) {
			return
		}
	}
}

func (q *queue) empty() bool { return q.head.Load() == nil }

// run takes everything queued so far and runs it oldest first. Funcs that
// those funcs submit wait for the next call, so a func that resubmits itself
// cannot starve the loop.
func (q *queue) run() (ran int) {
	n := q.head.Swap(nil)
	if n == nil {
		return 0
	}
	var prev *node
	for n != nil { // reverse: the stack is newest first
		next := n.next
		n.next = prev
		prev, n = n, next
	}
	for n = prev; n != nil; n = n.next {
		n.f()
		ran++
	}
	return ran
}
