package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentrelay/agentrelay/bufpool"
	"github.com/agentrelay/agentrelay/reactor"
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

// State is where a relay is in its life.
type State uint32

const (
	StateWaiting   State = iota // listening; waiting for the guest's core.ready
	StateServing                // serving clients
	StateGuestGone              // the guest's stream ended, or it never became ready
	StateStopped                // stopped by its owner or with its loop
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

// Loop serves any number of relays, one per sandbox, from one reactor loop
// on one OS thread. Everything the relays' hot path touches belongs to the
// loop: the reactor, the buffer pool, the queue of log records and the
// goroutine that writes them; a host runs one Loop per CPU and shares
// nothing between them.
//
// Each pass of the reactor services only the relays that had an event, a
// timer or unfinished work, each within its own budgets, so an idle
// sandbox costs no time and a busy one cannot take a whole pass.
type Loop struct {
	opt  LoopOptions
	rl   *reactor.Loop
	pool *bufpool.Pool
	logq *logQueue
	log  *slog.Logger
	side sideQueue

	// Loop thread only.
	members []*Relay // every relay on the loop, by Relay.member
	active  []*Relay // relays to service in this pass
	spare   []*Relay // the other active list, swapped in each pass
	// private: the loop of one relay made with New, which stops when that
	// relay is done.
	private bool
	stopped bool
	// share is each relay's budget in this pass (see passBudget).
	share int
	// The pool's traffic when its holdings were last published.
	poolGets, poolPuts uint64

	count  atomic.Int64
	busyNS atomic.Uint64
	// The pool's holdings as of the last pass: the pool itself is the
	// loop thread's.
	poolLent, poolIdle atomic.Int64
	// addMu orders Add against Stop, so a relay added is always in the
	// loop before the loop's last pass drains everything.
	addMu  sync.Mutex
	closed bool
}

// NewLoop creates a loop; Run drives it.
func NewLoop(o LoopOptions) (*Loop, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PoolIdle <= 0 {
		o.PoolIdle = defaultPoolIdle
	}
	return newLoop(o, bufpool.New(o.PoolIdle))
}

func newLoop(o LoopOptions, pool *bufpool.Pool) (*Loop, error) {
	rl, err := reactor.New()
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	l := &Loop{opt: o, rl: rl, pool: pool, logq: newLogQueue(logQueueLen), log: o.Logger}
	l.side.start()
	rl.SetIdle(l.service)
	return l, nil
}

// Index is the loop's index from LoopOptions.
func (l *Loop) Index() int { return l.opt.Index }

// Relays is how many relays the loop holds now, waiting or serving. Safe
// from any goroutine.
func (l *Loop) Relays() int { return int(l.count.Load()) }

// LoopStats are a loop's counters.
type LoopStats struct {
	Relays   int           // relays on the loop now
	Busy     time.Duration // time spent servicing relays
	Wakeups  uint64        // epoll_wait returns
	PoolLent int64         // bytes the loop's pool has lent out
	PoolIdle int64         // bytes it keeps for reuse
}

// Stats returns the loop's counters. Safe from any goroutine; the pool's
// figures are as of the loop's last pass.
func (l *Loop) Stats() LoopStats {
	rs := l.rl.Stats()
	return LoopStats{Relays: l.Relays(), Busy: time.Duration(l.busyNS.Load()), Wakeups: rs.Wakeups,
		PoolLent: l.poolLent.Load(), PoolIdle: l.poolIdle.Load()}
}

// Run drives the loop on the calling goroutine, locked to its OS thread,
// until Stop; it returns once every relay has finished and their sockets
// are removed.
func (l *Loop) Run() error {
	err := l.rl.Run()
	for len(l.members) > 0 { // the reactor failed: nothing more can be flushed
		l.members[len(l.members)-1].teardown(StateStopped, "loop stopped")
	}
	if cerr := l.release(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// release runs what the side goroutine still has, flushes the log queue
// and frees the reactor: after Run, or for a loop that never ran.
func (l *Loop) release() error {
	l.side.close()
	l.logq.close()
	return l.rl.Close()
}

// Stop stops every relay as Relay.Stop does (their clients' output is
// flushed for up to Options.DrainTimeout) and then the loop. Safe from any
// goroutine, any number of times.
func (l *Loop) Stop() {
	l.addMu.Lock()
	defer l.addMu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	l.rl.Submit(func() {
		l.stopped = true
		// Backwards: a relay still waiting for its guest leaves at once,
		// and leave moves the last member, already seen, into its place.
		for i := len(l.members) - 1; i >= 0; i-- {
			l.members[i].drain(nil, "relay stopping")
		}
		if len(l.members) == 0 {
			l.rl.Stop()
		}
	})
}

// Add starts a relay on the loop. Its socket is listening when Add returns;
// the loop then waits for the guest's core.ready (opt.ReadyTimeout) and
// serves. opt.Pool is ignored: the loop's pool lends the buffers. Safe from
// any goroutine.
func (l *Loop) Add(opt Options) (*Relay, error) {
	l.addMu.Lock()
	defer l.addMu.Unlock()
	if l.closed {
		return nil, errors.New("relay: loop stopped")
	}
	opt.Pool = l.pool
	r, err := newRelay(opt, l)
	if err != nil {
		return nil, err
	}
	l.count.Add(1)
	l.rl.Submit(func() {
		if l.stopped {
			r.teardown(StateStopped, "loop stopping")
			return
		}
		if err := l.join(r); err != nil {
			r.fail(err)
		}
	})
	return r, nil
}

// Trim has the loop drop the idle buffers its pool keeps (bufpool.Pool.Trim),
// and the spare capacity of its relay lists: for after a burst. The channel
// is closed once the loop has done it (never, if the loop has stopped).
// Safe from any goroutine.
func (l *Loop) Trim() <-chan struct{} {
	done := make(chan struct{})
	l.rl.Submit(func() {
		defer close(done)
		l.pool.Trim()
		l.poolIdle.Store(0)
		if cap(l.members) > 2*len(l.members)+64 {
			l.members = append([]*Relay(nil), l.members...)
		}
		if cap(l.spare) > 2*len(l.members)+64 {
			l.spare = nil
		}
	})
	return done
}

// service is the reactor's idle pass: each relay with work gets one pass of
// its own (Relay.service), within its own budgets.
func (l *Loop) service(now time.Time) bool {
	if len(l.active) == 0 {
		l.publishPool() // a timer (a relay's sweep) may have given buffers back
		if len(l.side.spill) > 0 {
			// Work the side goroutine had no room for (a burst of
			// teardowns): keep passing until it has taken it all, or a
			// Done would wait for an event that may never come.
			l.side.retry()
			return len(l.side.spill) > 0
		}
		return false
	}
	act := l.active
	l.active = l.spare[:0]
	l.share = max(passBudget/len(act), minShare)
	for _, r := range act {
		r.kicked = false
		if r.st == stateDone {
			continue
		}
		if r.service(now) {
			r.kick()
		}
	}
	clear(act)
	l.spare = act
	l.side.retry()
	l.publishPool()
	l.busyNS.Add(uint64(time.Since(now)))
	return len(l.active) > 0 || len(l.side.spill) > 0
}

// publishPool copies the pool's holdings to where Stats reads them, when
// they changed.
func (l *Loop) publishPool() {
	ps := l.pool.Stats()
	if ps.Gets != l.poolGets || ps.Puts != l.poolPuts {
		l.poolGets, l.poolPuts = ps.Gets, ps.Puts
		l.poolLent.Store(ps.Lent)
		l.poolIdle.Store(ps.Idle)
	}
}

// join registers r with the loop and starts its wait for core.ready.
func (l *Loop) join(r *Relay) error {
	r.member = len(l.members)
	l.members = append(l.members, r)
	return r.awaitStart()
}

// leave takes r off the loop; a private loop stops with its relay.
func (l *Loop) leave(r *Relay) {
	last := l.members[len(l.members)-1]
	l.members[r.member] = last
	last.member = r.member
	l.members[len(l.members)-1] = nil
	l.members = l.members[:len(l.members)-1]
	r.member = -1
	l.count.Add(-1)
	if (l.private || l.stopped) && len(l.members) == 0 {
		l.rl.Stop()
	}
}

// sideQueue runs, on one goroutine per loop, what the loop thread must not
// wait for: unlinking a relay's socket, telling its owner it is done. The
// loop never blocks on it: a full channel spills into a list the next pass
// retries.
type sideQueue struct {
	ch    chan func()
	spill []func()
	done  chan struct{}
	once  sync.Once
}

func (q *sideQueue) start() {
	q.ch = make(chan func(), 256)
	q.done = make(chan struct{})
	go func() {
		defer close(q.done)
		for f := range q.ch {
			f()
		}
	}()
}

// push hands f to the side goroutine; loop thread only.
func (q *sideQueue) push(f func()) {
	q.retry()
	if len(q.spill) == 0 {
		select {
		case q.ch <- f:
			return
		default:
		}
	}
	q.spill = append(q.spill, f)
}

// retry moves spilled work to the channel while it has room.
func (q *sideQueue) retry() {
	for len(q.spill) > 0 {
		select {
		case q.ch <- q.spill[0]:
			q.spill[0] = nil
			q.spill = q.spill[1:]
		default:
			return
		}
	}
}

// close runs what is left and waits for the goroutine; after the loop.
func (q *sideQueue) close() {
	q.once.Do(func() {
		for _, f := range q.spill {
			q.ch <- f
		}
		q.spill = nil
		close(q.ch)
		<-q.done
	})
}
