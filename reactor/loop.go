package reactor

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"time"
)

// Handler receives the events of one registered fd: a mask of EPOLLIN,
// EPOLLOUT, EPOLLRDHUP, EPOLLERR and EPOLLHUP bits. It runs on the loop
// thread and must not block.
type Handler interface{ OnEvent(events uint32) }

// Loop is one epoll event loop. Run drives it on a locked OS thread; see the
// package documentation for which methods other goroutines may call.
type Loop struct {
	poller
	slots  slots
	timers timers
	wake   wake
	queue  queue

	idle func(now time.Time) (busy bool)
	busy bool // the last idle call asked for another pass without sleeping

	base  time.Time // time origin of the timer heap
	now   time.Time // cached once per iteration
	nowNS int64     // now - base

	running  atomic.Bool
	stopping atomic.Bool
	closed   bool

	counters counters
}

// ErrRunning is returned by Run when the loop is already running and by
// Close when it has not returned yet.
var ErrRunning = errors.New("reactor: loop is running")

// ErrClosed is returned by Run, RunOnce and Add after Close.
var ErrClosed = errors.New("reactor: loop is closed")

// New creates a loop: an epoll instance and its wake eventfd, both
// close-on-exec. Free them with Close once Run has returned.
func New() (*Loop, error) {
	l := &Loop{}
	if err := l.poller.open(); err != nil {
		return nil, err
	}
	if err := l.wake.open(); err != nil {
		_ = l.poller.close()
		return nil, err
	}
	if err := l.poller.add(l.wake.fd, epollIn, wakeToken); err != nil {
		_ = l.wake.close()
		_ = l.poller.close()
		return nil, err
	}
	l.slots.init()
	l.timers.init()
	l.base = time.Now()
	l.now = l.base
	return l, nil
}

// Add registers fd, edge-triggered, for events (EPOLLIN, EPOLLOUT,
// EPOLLRDHUP; EPOLLERR and EPOLLHUP are always reported) and returns the
// token that names the registration. Loop thread only, or before Run.
//
// The handler table grows here if needed; nothing else in the loop
// allocates for a registration.
func (l *Loop) Add(fd int, events uint32, h Handler) (Token, error) {
	if l.closed {
		return 0, ErrClosed
	}
	if h == nil {
		return 0, fmt.Errorf("reactor: add fd %d: nil handler", fd)
	}
	if fd < 0 || fd > math.MaxInt32 {
		return 0, fmt.Errorf("reactor: add fd %d: bad fd", fd)
	}
	tok := l.slots.alloc(fd, h)
	if err := l.poller.add(fd, events, tok); err != nil {
		l.slots.release(&l.slots.s[tok.index()], tok.index())
		return 0, err
	}
	l.counters.registered.Add(1)
	return tok, nil
}

// Modify changes the events the registration t watches (EPOLL_CTL_MOD,
// still edge-triggered). A readiness already there is reported by the next
// wait, so arming EPOLLOUT after a write returned EAGAIN loses no wake-up.
// Loop thread only, or before Run.
func (l *Loop) Modify(t Token, events uint32) error {
	s := l.slots.lookup(t)
	if s == nil {
		return fmt.Errorf("%w: %v", ErrStaleToken, t)
	}
	return l.poller.mod(int(s.fd), events, t)
}

// Remove unregisters the fd that t names (EPOLL_CTL_DEL) and retires t:
// from now on no event carrying t is dispatched, even one already returned
// by the current epoll_wait. Call it before closing the fd. Loop thread only,
// or before Run. Removing an already removed token returns ErrStaleToken.
//
// The registration is retired even if EPOLL_CTL_DEL fails (for instance
// because the fd was closed first); the error is still returned.
func (l *Loop) Remove(t Token) error {
	s := l.slots.lookup(t)
	if s == nil {
		return fmt.Errorf("%w: %v", ErrStaleToken, t)
	}
	fd := int(s.fd)
	l.slots.release(s, t.index())
	l.counters.registered.Add(-1)
	if l.closed {
		return nil
	}
	return l.poller.del(fd)
}

// Run runs the loop on the calling goroutine, locked to its OS thread,
// until Stop. It returns nil after Stop, or the error that made epoll_wait
// fail. It closes nothing; see Close.
func (l *Loop) Run() error {
	if l.closed {
		return ErrClosed
	}
	if !l.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer l.running.Store(false)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for !l.stopping.Load() {
		if err := l.RunOnce(-1); err != nil {
			return err
		}
	}
	return nil
}

// RunOnce runs one iteration of the loop on the calling goroutine: wait for
// events (at most limit; negative means as long as the timers allow), then
// dispatch them, run submitted funcs, fire due timers and call the idle
// func. Run is RunOnce in a loop; RunOnce exists for tests and benchmarks
// that drive the loop one step at a time, and must not be called while Run
// is running.
func (l *Loop) RunOnce(limit time.Duration) error {
	if l.closed {
		return ErrClosed
	}
	msec := l.timeout(limit)
	if msec != 0 {
		l.wake.sleeping.Store(1)
		if !l.queue.empty() || l.stopping.Load() {
			msec = 0 // work arrived before the flag was visible
		}
	}
	n, err := l.poller.wait(msec)
	l.wake.sleeping.Store(0)
	if err != nil {
		return err
	}
	l.now = time.Now()
	l.nowNS = int64(l.now.Sub(l.base))
	l.counters.wakeups.Add(1)

	var events, stale uint64
	for i := 0; i < n; i++ {
		ev := &l.poller.events[i]
		tok := dataOf(ev)
		if tok == wakeToken {
			l.wake.drain()
			continue
		}
		// Look the slot up afresh for every event: an earlier handler in
		// this batch may have removed this token or grown the table.
		s := l.slots.lookup(tok)
		if s == nil {
			stale++
			continue
		}
		events++
		s.h.OnEvent(ev.Events)
	}
	if events != 0 {
		l.counters.events.Add(events)
	}
	if stale != 0 {
		l.counters.stale.Add(stale)
	}

	l.queue.run()
	if fired := l.timers.fire(l.nowNS, l.now); fired != 0 {
		l.counters.timersFired.Add(uint64(fired))
	}
	l.busy = false
	if l.idle != nil {
		l.busy = l.idle(l.now)
	}
	return nil
}

// timeout returns the epoll_wait timeout in milliseconds for the next
// iteration: 0 if the idle func asked to stay busy, otherwise until the
// earliest timer (rounded up: epoll_wait counts whole milliseconds and a
// timer woken a fraction early would cost a second, empty wakeup), capped
// by limit, -1 if nothing bounds it.
func (l *Loop) timeout(limit time.Duration) int {
	if l.busy || limit == 0 {
		return 0
	}
	d := time.Duration(-1)
	if when, ok := l.timers.next(); ok {
		d = time.Duration(when - l.nowNS)
		if d <= 0 {
			return 0
		}
	}
	if limit > 0 && (d < 0 || limit < d) {
		d = limit
	}
	if d < 0 {
		return -1
	}
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms > math.MaxInt32 {
		ms = math.MaxInt32
	}
	return int(ms)
}

// Stop makes Run return after its current iteration. Any goroutine may call
// it, any number of times; it is permanent. Funcs submitted after Stop may
// never run.
func (l *Loop) Stop() {
	l.stopping.Store(true)
	l.wake.poke()
}

// Submit hands f to the loop, which runs it on the loop thread in the next
// iteration. Funcs submitted by one goroutine run in the order submitted.
// Any goroutine may call it. It allocates a queue node and may write the
// wake eventfd, so it is for control (registering a connection, arming a
// timer), not for per-event traffic.
func (l *Loop) Submit(f func()) {
	l.queue.push(f)
	l.counters.submits.Add(1)
	l.wake.poke()
}

// SetIdle sets f to run once per iteration after events, submitted funcs and
// timers; f returning busy=true makes the next epoll_wait poll (timeout 0)
// instead of sleeping. nil removes it. Loop thread only, or before Run.
func (l *Loop) SetIdle(f func(now time.Time) (busy bool)) { l.idle = f }

// Schedule arms t to call f(now) on the loop thread at or after at, moving
// it if it is already armed. Loop thread only, or before Run; use Submit
// from elsewhere. It allocates only when the heap grows past its largest
// size so far.
func (l *Loop) Schedule(t *Timer, at time.Time, f func(now time.Time)) {
	l.timers.schedule(t, int64(at.Sub(l.base)), f)
}

// Cancel disarms t if it is armed. Loop thread only, or before Run.
func (l *Loop) Cancel(t *Timer) { l.timers.cancel(t) }

// Now returns the time read once when the current iteration woke up (or when
// the loop was created, before the first). Handlers should use it instead of
// time.Now: it costs nothing and is the clock timers are fired against.
// Loop thread only.
func (l *Loop) Now() time.Time { return l.now }

// Close frees the epoll instance and the wake eventfd. It fails with
// ErrRunning while Run has not returned. It closes no fd registered with
// Add: those belong to their owners. Closing twice is a no-op.
func (l *Loop) Close() error {
	if l.running.Load() {
		return ErrRunning
	}
	if l.closed {
		return nil
	}
	l.closed = true
	return errors.Join(l.wake.close(), l.poller.close())
}
