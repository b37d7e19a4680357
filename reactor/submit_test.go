package reactor

import (
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSubmitManyGoroutines checks that every submitted func runs exactly
// once, on the loop, in each submitter's order.
func TestSubmitManyGoroutines(t *testing.T) {
	l := newLoop(t)
	const goroutines, each = 8, 2000
	type rec struct{ g, i int }
	var ran []rec // appended on the loop thread only
	all := make(chan struct{})
	stop := startRun(t, l)

	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				l.Submit(func() {
					ran = append(ran, rec{g, i})
					if len(ran) == goroutines*each {
						close(all)
					}
				})
				if i%256 == 0 {
					time.Sleep(50 * time.Microsecond) // let the loop fall asleep now and then
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-all:
	case <-time.After(20 * time.Second):
		t.Fatal("not every submitted func ran")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(ran) != goroutines*each {
		t.Fatalf("%d funcs ran, want %d", len(ran), goroutines*each)
	}
	next := make([]int, goroutines)
	for _, r := range ran {
		if r.i != next[r.g] {
			t.Fatalf("goroutine %d: func %d ran when %d was due", r.g, r.i, next[r.g])
		}
		next[r.g]++
	}
	s := l.Stats()
	if s.Submits != goroutines*each {
		t.Fatalf("Submits %d, want %d", s.Submits, goroutines*each)
	}
	// The sleeping flag spares busy submitters the eventfd write: far fewer
	// wakeups than submits.
	t.Logf("%d submits, %d loop wakeups", s.Submits, s.Wakeups)
}

// TestSubmitWakesSleepingLoop checks the wake path itself: a loop blocked
// in epoll_wait with nothing else to do runs a submitted func promptly.
func TestSubmitWakesSleepingLoop(t *testing.T) {
	l := newLoop(t)
	stop := startRun(t, l)
	for i := 0; i < 50; i++ {
		deadline := time.Now().Add(10 * time.Second)
		for l.wake.sleeping.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("loop never went to sleep")
			}
			time.Sleep(100 * time.Microsecond)
		}
		done := make(chan struct{})
		l.Submit(func() { close(done) })
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: submitted func did not run on a sleeping loop", i)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSubmitFromLoopRunsNextIteration checks that a func submitted from the
// loop itself runs in the following iteration, without the loop sleeping in
// between, and that a func resubmitting itself cannot starve the loop.
func TestSubmitFromLoopRunsNextIteration(t *testing.T) {
	l := newLoop(t)
	runs := 0
	var again func()
	again = func() {
		runs++
		l.Submit(again)
	}
	l.Submit(again)
	start := time.Now()
	for i := 1; i <= 3; i++ {
		if err := l.RunOnce(3 * time.Second); err != nil {
			t.Fatal(err)
		}
		if runs != i {
			t.Fatalf("iteration %d: func ran %d times", i, runs)
		}
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("loop slept %v with work queued", d)
	}
}

func TestQueueOrder(t *testing.T) {
	var q queue
	var got []int
	for i := 0; i < 5; i++ {
		q.push(func() { got = append(got, i) })
	}
	if n := q.run(); n != 5 {
		t.Fatalf("ran %d, want 5", n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("ran in order %v", got)
		}
	}
	if !q.empty() || q.run() != 0 {
		t.Fatal("queue not empty after run")
	}
}

// TestSubmitToBusyLoopSkipsEventfd checks that Submit writes the eventfd
// only for a loop that announced it is going to sleep, and that the loop
// still sees work queued without that write.
func TestSubmitToBusyLoopSkipsEventfd(t *testing.T) {
	l := newLoop(t)
	ran := false
	l.Submit(func() { ran = true })
	var buf [8]byte
	if _, err := unix.Read(l.wake.fd, buf[:]); err != unix.EAGAIN {
		t.Fatalf("eventfd read %v after Submit to a loop that is not sleeping; want EAGAIN (no write)", err)
	}
	start := time.Now()
	if err := l.RunOnce(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !ran || time.Since(start) > 2500*time.Millisecond {
		t.Fatalf("queued func ran=%v after %v", ran, time.Since(start))
	}

	l.wake.sleeping.Store(1) // as the loop does before epoll_wait
	l.Submit(func() {})
	if _, err := unix.Read(l.wake.fd, buf[:]); err != nil {
		t.Fatalf("eventfd not written for a sleeping loop: %v", err)
	}
	l.Submit(func() {})
	if _, err := unix.Read(l.wake.fd, buf[:]); err != unix.EAGAIN {
		t.Fatalf("second Submit in one sleep wrote the eventfd again: %v", err)
	}
}
