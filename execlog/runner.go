package execlog

import (
	"sync"
	"sync/atomic"
)

// Runner is one goroutine that formats and writes exec.log for any number
// of Writers, so that a host's thousand sandboxes cost one goroutine, not a
// thousand. Producers hand it a Writer with work through a lock-free list:
// appending never blocks and never takes a lock.
type Runner struct {
	head atomic.Pointer[Writer] // Writers with work, newest first
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewRunner starts a Runner; Close stops it once its Writers are closed.
func NewRunner() *Runner {
	r := &Runner{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go r.run()
	return r
}

// push puts w, which is not on the list (w.queued was false), on it.
func (r *Runner) push(w *Writer) {
	for {
		old := r.head.Load()
		w.next = old
		if r.head.CompareAndSwap(old, w) {
			break
		}
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Runner) run() {
	defer close(r.done)
	for {
		list := r.head.Swap(nil)
		if list == nil {
			select {
			case <-r.wake:
				continue
			case <-r.stop:
				return
			}
		}
		for w := list; w != nil; {
			next := w.next
			w.next = nil
			// Off the list before draining: an append published after
			// this puts it back, one before is drained below.
			w.queued.Store(false)
			w.runMu.Lock()
			if !w.finished {
				w.service()
			}
			w.runMu.Unlock()
			w = next
		}
	}
}

// Close stops the goroutine. Writers still open stop being written.
func (r *Runner) Close() {
	r.once.Do(func() {
		close(r.stop)
		<-r.done
	})
}
