package relay

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// Work the side goroutine had no room for is handed over without any
// further event on the loop: a burst of teardowns with nothing else going
// on must not leave a Done unclosed.
func TestSideQueueSpillDrainsWithoutEvents(t *testing.T) {
	l, err := NewLoop(LoopOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	defer func() {
		l.Stop()
		<-done
	}()
	block := make(chan struct{})
	var ran atomic.Int32
	const n = 300 // more than the side channel holds
	pushed := make(chan int, 1)
	l.rl.Submit(func() {
		l.side.push(func() { <-block })
		for range n {
			l.side.push(func() { ran.Add(1) })
		}
		pushed <- len(l.side.spill)
	})
	if spilled := <-pushed; spilled == 0 {
		t.Fatal("nothing spilled: the test proves nothing")
	}
	time.Sleep(20 * time.Millisecond)
	close(block)
	deadline := time.Now().Add(5 * time.Second)
	for ran.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d side funcs ran; the spilled ones were never handed over", ran.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
