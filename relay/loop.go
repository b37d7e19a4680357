package relay

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/agentrelay/agentrelay/bufpool"
)

// LoopOptions configures a Loop.
type LoopOptions struct {
	// Index names the loop in logs and stats.
	Index int
	// Logger receives the loop's own records. Default: slog.Default().
	Logger *slog.Logger
	// PoolIdle bounds the idle buffers the loop's pool keeps. Default
	// 16 MiB.
	PoolIdle int64
}

// State is where a relay of a Loop is in its life.
type State uint32

const (
	StateWaiting   State = iota // listening; waiting for the guest's core.ready
	StateServing                // serving clients
	StateGuestGone              // the guest's stream ended, or it never became ready
	StateStopped                // closed by its owner or with its loop
)

func (s State) String() string {
	switch s {
	case StateWaiting:
		return "waiting"
	case StateServing:
		return "serving"
	case StateGuestGone:
		return "guest_gone"
	case StateStopped:
		return "stopped"
	}
	return "unknown"
}

// Loop serves any number of relays (one per sandbox) from one reactor loop.
//
// TODO(host): this first cut runs each relay on its own reactor; the
// relays move onto one shared loop next.
type Loop struct {
	opt  LoopOptions
	pool *bufpool.Pool

	mu      sync.Mutex
	relays  map[*Relay]struct{}
	stopped bool
	count   atomic.Int64
	wg      sync.WaitGroup
	stop    chan struct{}
}

// NewLoop creates a loop; Run drives it.
func NewLoop(o LoopOptions) (*Loop, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PoolIdle <= 0 {
		o.PoolIdle = defaultPoolIdle
	}
	return &Loop{opt: o, pool: bufpool.New(o.PoolIdle), relays: map[*Relay]struct{}{}, stop: make(chan struct{})}, nil
}

// Index is the loop's index from LoopOptions.
func (l *Loop) Index() int { return l.opt.Index }

// Relays is how many relays the loop holds now, in any state but stopped.
// Safe from any goroutine.
func (l *Loop) Relays() int { return int(l.count.Load()) }

// Run drives the loop on the calling goroutine until Stop, and returns once
// every relay has finished.
func (l *Loop) Run() error {
	<-l.stop
	l.wg.Wait()
	return nil
}

// Stop stops every relay as Relay.Close does and makes Run return. Safe from
// any goroutine.
func (l *Loop) Stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	l.stopped = true
	for r := range l.relays {
		r.Close()
	}
	close(l.stop)
}

// Add starts a relay on the loop: its socket is listening when Add returns,
// and the loop waits for the guest's core.ready (opt.ReadyTimeout), then
// serves. opt.Pool is ignored: the loop's pool lends the buffers. Safe from
// any goroutine.
func (l *Loop) Add(opt Options) (*Relay, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return nil, errors.New("relay: loop stopped")
	}
	r, err := New(opt)
	if err != nil {
		return nil, err
	}
	r.readyCh, r.doneCh = make(chan struct{}), make(chan struct{})
	l.relays[r] = struct{}{}
	l.count.Add(1)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() {
			l.mu.Lock()
			delete(l.relays, r)
			l.mu.Unlock()
			l.count.Add(-1)
			close(r.doneCh)
		}()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-r.closeCh:
				cancel()
			case <-r.doneCh:
			}
		}()
		if err := r.WaitReady(ctx); err != nil {
			r.setEnd(StateGuestGone, err)
			if r.closing.Load() {
				r.setEnd(StateStopped, err)
			}
			r.cleanupUnstarted()
			return
		}
		r.state.Store(uint32(StateServing))
		close(r.readyCh)
		err := r.Run(ctx)
		switch {
		case errors.Is(err, ErrGuestClosed):
			r.setEnd(StateGuestGone, err)
		default:
			r.setEnd(StateStopped, err)
		}
	}()
	return r, nil
}

func (r *Relay) setEnd(s State, err error) {
	r.state.Store(uint32(s))
	if err != nil {
		r.endErr.Store(&err)
	}
}

// cleanupUnstarted frees a relay whose Run never ran.
func (r *Relay) cleanupUnstarted() {
	r.cleanup()
}

// State reports where the relay is in its life. Safe from any goroutine.
func (r *Relay) State() State { return State(r.state.Load()) }

// Err reports why a relay of a Loop ended, or nil. Safe from any goroutine.
func (r *Relay) Err() error {
	if p := r.endErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Ready is closed once a relay of a Loop serves clients.
func (r *Relay) Ready() <-chan struct{} { return r.readyCh }

// Done is closed once a relay of a Loop has finished: clients closed, fds
// freed, socket removed.
func (r *Relay) Done() <-chan struct{} { return r.doneCh }

// Close ends a relay of a Loop: its clients are closed and their sessions
// killed in the guest, its socket removed and its fds freed. It returns at
// once; Done says when it is over. Safe from any goroutine, any number of
// times.
func (r *Relay) Close() {
	r.closeOnce.Do(func() {
		r.closing.Store(true)
		close(r.closeCh)
	})
}
