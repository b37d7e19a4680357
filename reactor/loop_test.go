package reactor

import (
	"errors"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDispatchToRightHandler(t *testing.T) {
	l := newLoop(t)
	const n = 4
	var got [n][]uint32
	pipes := make([]*pipeFds, n)
	for i := range pipes {
		pipes[i] = newPipe(t)
		if _, err := l.Add(pipes[i].r, unix.EPOLLIN|unix.EPOLLRDHUP, handlerFunc(func(ev uint32) {
			got[i] = append(got[i], ev)
			drain(pipes[i].r, make([]byte, 64))
		})); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, pipes[0].w, []byte("a"))
	mustWrite(t, pipes[2].w, []byte("c"))
	unix.Close(pipes[3].w)
	pipes[3].w = -1

	runUntil(t, l, func() bool { return len(got[0]) > 0 && len(got[2]) > 0 && len(got[3]) > 0 })
	if len(got[1]) != 0 {
		t.Errorf("handler 1 got %v for a fd nobody wrote to", got[1])
	}
	for _, i := range []int{0, 2} {
		if len(got[i]) != 1 || got[i][0]&unix.EPOLLIN == 0 {
			t.Errorf("handler %d got %#x, want one EPOLLIN", i, got[i])
		}
	}
	if len(got[3]) != 1 || got[3][0]&unix.EPOLLHUP == 0 {
		t.Errorf("handler 3 got %#x, want EPOLLHUP after the writer closed", got[3])
	}
	if s := l.Stats(); s.Events != 3 || s.StaleEvents != 0 || s.Registered != n {
		t.Errorf("stats %+v, want 3 events, 0 stale, %d registered", s, n)
	}
}

func TestRDHUP(t *testing.T) {
	l := newLoop(t)
	a, b := newSocketpair(t)
	var got uint32
	if _, err := l.Add(a, unix.EPOLLIN|unix.EPOLLRDHUP, handlerFunc(func(ev uint32) { got |= ev })); err != nil {
		t.Fatal(err)
	}
	if err := unix.Shutdown(b, unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
	runUntil(t, l, func() bool { return got != 0 })
	if got&unix.EPOLLRDHUP == 0 {
		t.Errorf("events %#x, want EPOLLRDHUP after the peer shut down writing", got)
	}
}

// TestEdgeTriggered checks that readiness is reported once per edge: an fd
// that stays readable or writable is not reported again, which is what a
// level-triggered registration would do.
func TestEdgeTriggered(t *testing.T) {
	l := newLoop(t)
	a, b := newSocketpair(t)
	var events []uint32
	if _, err := l.Add(a, unix.EPOLLIN|unix.EPOLLOUT, handlerFunc(func(ev uint32) { events = append(events, ev) })); err != nil {
		t.Fatal(err)
	}
	poll := func() []uint32 {
		t.Helper()
		events = events[:0]
		if err := l.RunOnce(0); err != nil {
			t.Fatal(err)
		}
		return events
	}

	// A fresh socket is writable: one EPOLLOUT edge, then silence although
	// it stays writable.
	if ev := poll(); len(ev) != 1 || ev[0] != unix.EPOLLOUT {
		t.Fatalf("first poll: %#x, want one EPOLLOUT", ev)
	}
	for i := 0; i < 3; i++ {
		if ev := poll(); len(ev) != 0 {
			t.Fatalf("still writable, no new edge, but got %#x", ev)
		}
	}

	// Three writes before the loop looks are one edge; data left unread is
	// not reported again.
	for i := 0; i < 3; i++ {
		mustWrite(t, b, []byte("x"))
	}
	if ev := poll(); len(ev) != 1 || ev[0]&unix.EPOLLIN == 0 {
		t.Fatalf("after writes: %#x, want one EPOLLIN", ev)
	}
	if ev := poll(); len(ev) != 0 {
		t.Fatalf("unread data reported again: %#x", ev)
	}

	// New data is a new edge even though the old is still unread.
	mustWrite(t, b, []byte("y"))
	if ev := poll(); len(ev) != 1 || ev[0]&unix.EPOLLIN == 0 {
		t.Fatalf("after another write: %#x, want one EPOLLIN", ev)
	}
	if n := drain(a, make([]byte, 16)); n != 4 {
		t.Fatalf("drained %d bytes, want 4", n)
	}
}

// TestStaleEventSuppressed builds the case the tokens exist for: two fds are
// ready in one batch, and the handler that runs first removes the other,
// closes it, and registers a new fd that gets the same fd number and the
// same slot. The event the kernel already returned for the old fd must not
// reach the new handler.
func TestStaleEventSuppressed(t *testing.T) {
	l := newLoop(t)
	p := [2]*pipeFds{newPipe(t), newPipe(t)}
	var tok [2]Token
	var oldCalls [2]int
	newCalls := 0
	var newTok Token
	var newPipeFds *pipeFds

	for i := range p {
		var err error
		tok[i], err = l.Add(p[i].r, unix.EPOLLIN, handlerFunc(func(uint32) {
			oldCalls[i]++
			if oldCalls[0]+oldCalls[1] > 1 {
				return // the second handler ran: the test has failed, reported below
			}
			other := 1 - i
			if err := l.Remove(tok[other]); err != nil {
				t.Errorf("remove: %v", err)
			}
			oldFd := p[other].r
			unix.Close(oldFd)
			p[other].r = -1
			newPipeFds = newPipe(t)
			if newPipeFds.r != oldFd {
				t.Errorf("new pipe got fd %d, want the reused %d", newPipeFds.r, oldFd)
			}
			var err error
			newTok, err = l.Add(newPipeFds.r, unix.EPOLLIN, handlerFunc(func(uint32) { newCalls++ }))
			if err != nil {
				t.Errorf("add: %v", err)
			}
			if newTok.index() != tok[other].index() || newTok == tok[other] {
				t.Errorf("new token %v, want slot %d reused with a new generation (old %v)", newTok, tok[other].index(), tok[other])
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, p[0].w, []byte("a"))
	mustWrite(t, p[1].w, []byte("b"))

	if err := l.RunOnce(time.Second); err != nil {
		t.Fatal(err)
	}
	if oldCalls[0]+oldCalls[1] != 1 {
		t.Fatalf("old handlers called %v times, want exactly one of them once", oldCalls)
	}
	if newCalls != 0 {
		t.Fatalf("new handler received the removed fd's event")
	}
	if s := l.Stats(); s.Events != 1 || s.StaleEvents != 1 {
		t.Fatalf("stats %+v, want 1 event and 1 stale", s)
	}

	// The new registration works and only sees its own events.
	mustWrite(t, newPipeFds.w, []byte("c"))
	runUntil(t, l, func() bool { return newCalls > 0 })
	if newCalls != 1 || oldCalls[0]+oldCalls[1] != 1 {
		t.Fatalf("after a write to the new fd: new %d, old %v", newCalls, oldCalls)
	}
}

func TestRemove(t *testing.T) {
	l := newLoop(t)
	p := newPipe(t)
	calls := 0
	h := handlerFunc(func(uint32) { calls++ })
	tok, err := l.Add(p.r, unix.EPOLLIN, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(tok); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, p.w, []byte("x"))
	if err := l.RunOnce(20 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if calls != 0 {
		t.Fatal("removed fd dispatched")
	}
	if err := l.Remove(tok); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("second Remove: %v, want ErrStaleToken", err)
	}
	if err := l.Remove(0); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("Remove(0): %v, want ErrStaleToken", err)
	}
	if err := l.Remove(makeToken(1000, 1)); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("Remove of an unissued token: %v, want ErrStaleToken", err)
	}

	// Re-adding reuses the slot under a new generation, and the old token
	// cannot remove the new registration.
	tok2, err := l.Add(p.r, unix.EPOLLIN, h)
	if err != nil {
		t.Fatal(err)
	}
	if tok2.index() != tok.index() || tok2.gen() == tok.gen() {
		t.Fatalf("re-added token %v, old %v: want same slot, new generation", tok2, tok)
	}
	if err := l.Remove(tok); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("old token removed the new registration: %v", err)
	}
	mustWrite(t, p.w, []byte("y")) // a new edge for the new registration
	runUntil(t, l, func() bool { return calls > 0 })
	if s := l.Stats(); s.Registered != 1 {
		t.Fatalf("registered %d, want 1", s.Registered)
	}
}

func TestAddErrors(t *testing.T) {
	l := newLoop(t)
	if _, err := l.Add(0, unix.EPOLLIN, nil); err == nil {
		t.Error("Add with nil handler succeeded")
	}
	h := handlerFunc(func(uint32) {})
	if _, err := l.Add(-1, unix.EPOLLIN, h); err == nil {
		t.Error("Add of fd -1 succeeded")
	}
	p := newPipe(t)
	if _, err := l.Add(p.r, unix.EPOLLIN, h); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Add(p.r, unix.EPOLLIN, h); !errors.Is(err, unix.EEXIST) {
		t.Errorf("second Add of the same fd: %v, want EEXIST", err)
	}
	if s := l.Stats(); s.Registered != 1 {
		t.Errorf("failed Adds left %d registrations, want 1", s.Registered)
	}
}

// TestSlotTableGrows registers more fds than the table's initial capacity
// and checks that every one still reaches its own handler.
func TestSlotTableGrows(t *testing.T) {
	l := newLoop(t)
	const n = 200
	got := make([]int, n)
	pipes := make([]*pipeFds, n)
	for i := range pipes {
		pipes[i] = newPipe(t)
		if _, err := l.Add(pipes[i].r, unix.EPOLLIN, handlerFunc(func(uint32) { got[i]++ })); err != nil {
			t.Fatal(err)
		}
	}
	for i := n - 1; i >= 0; i-- {
		mustWrite(t, pipes[i].w, []byte{byte(i)})
	}
	runUntil(t, l, func() bool { return l.Stats().Events == n })
	for i, c := range got {
		if c != 1 {
			t.Fatalf("handler %d called %d times", i, c)
		}
	}
}

func TestStopFromAnotherGoroutine(t *testing.T) {
	l := newLoop(t)
	done := make(chan error, 1)
	go func() { done <- l.Run() }()

	// Wait until the loop is blocked in epoll_wait, so Stop has to wake it.
	deadline := time.Now().Add(10 * time.Second)
	for l.wake.sleeping.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("loop never went to sleep")
		}
		time.Sleep(time.Millisecond)
	}
	go l.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after Stop")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Run(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
}

func TestStopBeforeRun(t *testing.T) {
	l := newLoop(t)
	l.Stop()
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run ignored an earlier Stop")
	}
}

func TestStopFromHandler(t *testing.T) {
	l := newLoop(t)
	p := newPipe(t)
	if _, err := l.Add(p.r, unix.EPOLLIN, handlerFunc(func(uint32) { l.Stop() })); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, p.w, []byte("x"))
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after a handler called Stop")
	}
}

func TestRunTwiceAndCloseWhileRunning(t *testing.T) {
	l := newLoop(t)
	started := make(chan struct{})
	l.Submit(func() { close(started) })
	stop := startRun(t, l)
	<-started
	if err := l.Run(); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run: %v, want ErrRunning", err)
	}
	if err := l.Close(); !errors.Is(err, ErrRunning) {
		t.Errorf("Close while running: %v, want ErrRunning", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestRunOnOneLockedThread checks that handlers, timers, submitted funcs
// and the idle func all run on one OS thread, while the runtime is given
// every chance to move the goroutine (GC, other goroutines, sleeps).
func TestRunOnOneLockedThread(t *testing.T) {
	l := newLoop(t)
	a, b := newSocketpair(t)

	var tids []int // appended on the loop thread only
	record := func() { tids = append(tids, unix.Gettid()) }
	buf := make([]byte, 64)
	if _, err := l.Add(a, unix.EPOLLIN, handlerFunc(func(uint32) {
		record()
		drain(a, buf)
	})); err != nil {
		t.Fatal(err)
	}
	var tm Timer
	var tick func(time.Time)
	tick = func(now time.Time) {
		record()
		l.Schedule(&tm, now.Add(time.Millisecond), tick)
	}
	l.Schedule(&tm, time.Now(), tick)
	l.SetIdle(func(time.Time) bool { record(); return false })

	stop := startRun(t, l)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				l.Submit(record)
				unix.Write(b, []byte{1})
				if i%10 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 5; i++ {
			_ = make([]byte, 1<<20)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	wg.Wait()
	time.Sleep(20 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(tids) < 200 {
		t.Fatalf("only %d loop callbacks recorded", len(tids))
	}
	for i, tid := range tids {
		if tid != tids[0] {
			t.Fatalf("callback %d ran on thread %d, the first on %d", i, tid, tids[0])
		}
	}
	if s := l.Stats(); s.TimersFired == 0 || s.Events == 0 || s.Submits != 200 {
		t.Fatalf("stats %+v: want timers, events and 200 submits", s)
	}
}

func TestIdleBusySkipsSleep(t *testing.T) {
	l := newLoop(t)
	busyLeft := 3
	calls := 0
	l.SetIdle(func(now time.Time) bool {
		calls++
		if !now.Equal(l.Now()) {
			t.Errorf("idle got %v, Now() is %v", now, l.Now())
		}
		if busyLeft > 0 {
			busyLeft--
			return true
		}
		return false
	})
	if err := l.RunOnce(0); err != nil { // first pass: nothing was busy before
		t.Fatal(err)
	}
	// While idle reports busy, a wait of seconds must not block.
	start := time.Now()
	for i := 0; i < 3; i++ {
		if err := l.RunOnce(3 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("busy iterations slept %v", d)
	}
	if calls != 4 {
		t.Fatalf("idle called %d times in 4 iterations", calls)
	}
	// Not busy any more: the next wait sleeps its full time. (A signal can
	// cut one wait short with EINTR; a loop that ignored busy=false never
	// sleeps at all.)
	var d time.Duration
	for try := 0; try < 3 && d < 30*time.Millisecond; try++ {
		start = time.Now()
		if err := l.RunOnce(30 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		d = time.Since(start)
	}
	if d < 30*time.Millisecond {
		t.Fatalf("idle loop returned after %v, want a 30ms sleep", d)
	}
}

func TestNowCachedPerIteration(t *testing.T) {
	l := newLoop(t)
	pipes := [2]*pipeFds{newPipe(t), newPipe(t)}
	var seen []time.Time
	for _, p := range pipes {
		if _, err := l.Add(p.r, unix.EPOLLIN, handlerFunc(func(uint32) {
			seen = append(seen, l.Now())
			time.Sleep(2 * time.Millisecond) // a clock read per event would differ
		})); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, p.w, []byte("x"))
	}
	before := time.Now()
	if err := l.RunOnce(time.Second); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || !seen[0].Equal(seen[1]) || seen[0].Before(before) {
		t.Fatalf("Now in one batch: %v (iteration started after %v)", seen, before)
	}
	if err := l.RunOnce(0); err != nil {
		t.Fatal(err)
	}
	if !l.Now().After(seen[0]) {
		t.Fatalf("Now did not advance in the next iteration")
	}
}

// TestZeroAllocsPerEvent proves the steady-state dispatch path allocates
// nothing: a byte written to a socketpair, one loop iteration that
// dispatches it to a handler that reads it and re-arms a timer, and the idle
// func.
func TestZeroAllocsPerEvent(t *testing.T) {
	l := newLoop(t)
	a, b := newSocketpair(t)
	buf := make([]byte, 64)
	one := []byte{1}
	var tm Timer
	fire := func(time.Time) {}
	got := 0
	h := handlerFunc(func(uint32) {
		got += drain(a, buf)
		l.Schedule(&tm, l.Now().Add(time.Hour), fire)
	})
	if _, err := l.Add(a, unix.EPOLLIN, h); err != nil {
		t.Fatal(err)
	}
	l.SetIdle(func(time.Time) bool { return false })
	const runs = 1000
	allocs := testing.AllocsPerRun(runs, func() {
		unix.Write(b, one)
		if err := l.RunOnce(-1); err != nil {
			t.Fatal(err)
		}
	})
	if got != runs+1 { // AllocsPerRun warms up with one extra call
		t.Fatalf("handler read %d bytes, want %d", got, runs+1)
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per dispatched event, want 0", allocs)
	}
}

// TestModifyArmsWrite: a socket watched for EPOLLIN only reports no write
// readiness while its peer drains it; once Modify adds EPOLLOUT after a
// write came back EAGAIN, the peer's draining raises it.
func TestModifyArmsWrite(t *testing.T) {
	l := newLoop(t)
	a, b := newSocketpair(t)
	var got uint32
	tok, err := l.Add(a, unix.EPOLLIN, handlerFunc(func(ev uint32) { got |= ev }))
	if err != nil {
		t.Fatal(err)
	}
	fill := func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := unix.Write(a, buf); err == unix.EAGAIN {
				return
			}
		}
	}
	drain := func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := unix.Read(b, buf); err == unix.EAGAIN {
				return
			}
		}
	}
	fill()
	drain()
	for range 3 {
		if err := l.RunOnce(20 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if got&unix.EPOLLOUT != 0 {
		t.Fatalf("EPOLLOUT reported for a registration without it: %#x", got)
	}
	fill()
	if err := l.Modify(tok, unix.EPOLLIN|unix.EPOLLOUT); err != nil {
		t.Fatal(err)
	}
	drain()
	for i := 0; got&unix.EPOLLOUT == 0; i++ {
		if i == 50 {
			t.Fatal("no EPOLLOUT after Modify and the peer's drain")
		}
		if err := l.RunOnce(20 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	l.Remove(tok)
	if err := l.Modify(tok, unix.EPOLLIN); err == nil {
		t.Fatal("Modify of a removed token succeeded")
	}
}
