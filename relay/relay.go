package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/bufpool"
	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/reactor"
)

// ErrGuestClosed is returned by Run when the guest's stream ended.
var ErrGuestClosed = errors.New("relay: guest stream ended")

// Per-iteration budgets keep one loop pass bounded however much is waiting;
// whatever is left marks the loop busy and goes on after the next epoll_wait
// (with a zero timeout), so new events interleave with bulk transfers.
//
// On a loop of many relays the budgets are a pass's, shared by the relays
// with work in it (Loop.service): a relay alone gets all of it, n relays
// busy at once get 1/n each but never less than minShare, so a flooding
// sandbox delays its neighbours' frames by at most its share of a pass.
const (
	passBudget      = 1 << 20 // bytes each way
	minShare        = 64 << 10
	readChunk       = 256 << 10 // most bytes one client read takes per turn
	initialBuffer   = 64 << 10
	defaultPoolIdle = 16 << 20 // idle buffers a relay's own pool keeps: two maximum frames each way
)

type state uint8

const (
	stateNew     state = iota
	stateWaiting       // for core.ready
	stateServing
	stateDraining
	stateDone
)

// Relay connects clients on a Unix socket to a guest console. Build it with
// New, call WaitReady, then Run; Stop (or cancelling Run's context) drains
// and stops it.
type Relay struct {
	opt  Options
	log  *slog.Logger
	l    *Loop         // the loop serving it, shared with other relays or its own
	loop *reactor.Loop // l's reactor

	member int  // its index in l.members
	kicked bool // on l's active list for the next pass

	// The guest: its port, the frames read from it, its readiness as the
	// port's events last reported it.
	port                         guestPort
	g                            *guestReader
	direct                       bool   // frames may be written to clients from the port's buffer
	ready                        []byte // the cached core.ready frame, as the guest sent it
	form                         form   // the handshake, settled by core.ready
	guestReadable, guestWritable bool
	guestEnded                   bool
	// guestWake asks the next pass to route guest frames even without an
	// event: a client that held up the stream made room or left.
	guestWake bool

	// Clients: the listening socket, the slots, and the connections
	// waiting for one.
	ln         listener
	cl         clientTable
	waiting    acceptQueue
	waitersDue bool // a slot was freed: serveWaiters in this pass
	waitTimer  reactor.Timer

	// Host → guest: what is queued (see guestQueue), and the relay's own
	// frames.
	q         guestQueue
	ctl       buffer // relay-made frames (SIGKILLs)
	killFrame []byte // core.exec.signal {signal: 9} with id 0, patched per session

	// Guest → clients: the client holding up the stream, if any.
	stall       guestStall
	lastDropLog time.Time
	lane        *execlog.Lane

	// The clients' buffers come from pool; growth is charged to the
	// budgets.
	pool                *bufpool.Pool
	outBudget, inBudget *bufpool.Budget

	sess   sessionTable
	qTimer reactor.Timer // the next quarantine expiry

	st         state
	drainTimer reactor.Timer
	err        error
	shutdownCh chan struct{}
	stopOnce   sync.Once
	stats      counters
	pend       frameCounts // this pass's frame counts, published at its end

	// The sweep of emptied buffers (sweep), its func made once.
	sweepTimer reactor.Timer
	sweepFn    func(time.Time)

	// The wait for core.ready.
	readyTimer reactor.Timer
	waitStart  time.Time
	discarded  int
	ran        bool // Run was called

	// Its life as its owner sees it.
	state           atomic.Uint32 // a State
	endErr          atomic.Pointer[error]
	readyCh, doneCh chan struct{}
	closeOnce       sync.Once
}

// ctlBound bounds the relay's own frames waiting for the guest: a SIGKILL
// for every session and a disconnect notice per slot.
func ctlBound(slots, sessions, killLen int) int {
	return sessions*killLen + slots*64 + 4096
}

// New binds the client socket and prepares a relay on a loop of its own;
// clients that connect before Run wait in the socket's backlog. WaitReady
// and Run then drive that loop: `relay serve` is a host of one sandbox.
func New(opt Options) (*Relay, error) {
	opt.setDefaults()
	if opt.Pool == nil {
		opt.Pool = bufpool.New(defaultPoolIdle)
	}
	l, err := newLoop(LoopOptions{Logger: opt.Logger}, opt.Pool)
	if err != nil {
		return nil, err
	}
	l.private = true
	r, err := newRelay(opt, l)
	if err != nil {
		l.release()
		return nil, err
	}
	l.count.Add(1)
	if err := l.join(r); err != nil {
		r.teardown(StateStopped, "relay failed to start")
		l.release()
		return nil, err
	}
	// The loop waits for an event before its first pass, and guest bytes
	// already there raised none (the ring's consumer was not asleep): have
	// the first pass run at once.
	l.rl.Submit(func() {})
	return r, nil
}

// newRelay checks opt, takes the guest, binds the client socket and builds
// a relay for l; nothing touches l's thread yet (join does).
func newRelay(opt Options, l *Loop) (*Relay, error) {
	opt.setDefaults()
	var port guestPort
	switch {
	case opt.Guest != nil && opt.Console != nil:
		return nil, errors.New("relay: set Options.Guest or Options.Console, not both")
	case opt.Guest != nil:
	case opt.Console != nil && opt.Console.Tx != nil && opt.Console.Rx != nil:
	default:
		return nil, errors.New("relay: Options.Guest or Options.Console is required")
	}
	if opt.Socket == "" {
		return nil, errors.New("relay: Options.Socket is required")
	}
	if opt.OutputBudget < int64(opt.ClientBuffer) {
		return nil, fmt.Errorf("relay: OutputBudget %d is below ClientBuffer (%d)", opt.OutputBudget, opt.ClientBuffer)
	}
	if opt.InputBudget < 2*int64(bufpool.ClassSize(frame.MaxFrame)) {
		return nil, fmt.Errorf("relay: InputBudget %d is below two maximum frames (%d)", opt.InputBudget, 2*bufpool.ClassSize(frame.MaxFrame))
	}
	if opt.ClientBuffer < frame.MaxFrame {
		return nil, fmt.Errorf("relay: ClientBuffer %d is below one maximum frame (%d)", opt.ClientBuffer, frame.MaxFrame)
	}
	kill, err := frame.AppendMessage(nil, 0, frame.TypeExecSignal, frame.ExecSignal{Signal: 9})
	if err != nil {
		return nil, fmt.Errorf("relay: encode SIGKILL frame: %w", err)
	}
	if opt.Guest != nil {
		p, err := newFdPort(opt.Guest, l.pool)
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		port = p
	} else {
		port = newRingPort(opt.Console)
	}
	r := &Relay{
		opt:        opt,
		l:          l,
		loop:       l.rl,
		member:     -1,
		port:       port,
		g:          newGuestReader(port.source(), port.linear()),
		direct:     port.linear(),
		ln:         listener{fd: -1},
		stall:      guestStall{slot: -1},
		waiting:    newAcceptQueue(opt.AcceptQueue),
		killFrame:  kill,
		ctl:        newBuffer(4096, ctlBound(MaxSlots, opt.MaxSessionsTotal, len(kill)), l.pool, nil),
		sess:       newSessionTable(opt.MaxSessions, opt.MaxSessionsTotal),
		shutdownCh: make(chan struct{}, 1),
		readyCh:    make(chan struct{}),
		doneCh:     make(chan struct{}),
	}
	r.ln.allow = opt.AllowUIDs
	if r.ln.allow == nil {
		r.ln.allow = []uint32{uint32(os.Geteuid()), 0}
	}
	port.bind(r)
	r.log = slog.New(&asyncHandler{next: opt.Logger.Handler(), q: l.logq, dropped: &r.stats.logDrops})
	r.g.onCorrupt = r.corruptStart
	r.g.onResync = r.corruptEnd
	r.sweepFn = r.sweep
	if opt.ExecLog != nil {
		r.lane = opt.ExecLog.Lane()
	}
	r.pool = l.pool
	r.outBudget = bufpool.NewBudget(opt.OutputBudget, opt.Budget)
	r.inBudget = bufpool.NewBudget(opt.InputBudget, opt.Budget)
	for i := range r.cl.conns {
		r.cl.conns[i] = &vacant
	}
	if r.ln.fd, err = listen(opt.Socket); err != nil {
		port.close()
		return nil, err
	}
	r.log.Info("relay listening", "socket", opt.Socket)
	return r, nil
}

// GuestEnded reports whether the guest's stream has ended (its EOF or an
// error, or it stopped reading). Safe from any goroutine.
func (r *Relay) GuestEnded() bool { return r.stats.guestEnded.Load() != 0 }

// Shutdowns delivers a value each time a client's core.shutdown has been
// forwarded to the guest: the owner should begin drain escalation (the guest
// is expected to power off; force teardown if it does not).
func (r *Relay) Shutdowns() <-chan struct{} { return r.shutdownCh }

// WaitReady drives the relay's own loop until the guest's core.ready has
// come (and been cached for every client handshake; anything before it is
// discarded), and fails after Options.ReadyTimeout, when ctx ends, or when
// the guest stream ends first. For a relay made with New; a Loop's relay
// says it is ready through Ready.
func (r *Relay) WaitReady(ctx context.Context) error {
	if !r.l.private {
		return errors.New("relay: WaitReady is for a relay made with New")
	}
	stop := context.AfterFunc(ctx, func() { r.loop.Submit(func() {}) }) // wakes RunOnce
	defer stop()
	for {
		// ctx first: an owner that gave up (a signal) is not overruled by
		// a ready that came meanwhile.
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("relay: waiting for core.ready: %w", err)
		}
		if r.st != stateWaiting {
			break
		}
		if err := r.loop.RunOnce(-1); err != nil {
			return fmt.Errorf("relay: waiting for core.ready: %w", err)
		}
	}
	if r.ready != nil {
		return nil
	}
	if err := r.Err(); err != nil {
		return err
	}
	return errors.New("relay: the guest never became ready")
}

// awaitStart registers the guest port and starts the wait for core.ready;
// on the loop thread (or before the loop runs).
func (r *Relay) awaitStart() error {
	if err := r.port.register(r.loop); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r.st = stateWaiting
	r.waitStart = r.loop.Now()
	r.guestReadable = true
	r.loop.Schedule(&r.readyTimer, r.waitStart.Add(r.opt.ReadyTimeout), func(time.Time) {
		r.fail(fmt.Errorf("relay: timed out after %s waiting for core.ready from the guest", r.opt.ReadyTimeout))
	})
	r.kick()
	return nil
}

// awaitReady is a waiting relay's pass: it reads the guest stream up to
// core.ready, within the pass's budget, and reports whether it has more to
// do without a new event.
func (r *Relay) awaitReady() (busy bool) {
	budget := r.l.share
	for {
		f, ok := r.g.next(&budget)
		if !ok {
			if budget <= 0 {
				return true
			}
			if r.port.linear() && r.guestReadable {
				// Parse what comes in this same pass: a buffer held from
				// one pass to the next is one no other relay can use.
				n, err := r.port.fill(r.g.wanted())
				if err != nil {
					r.fail(fmt.Errorf("relay: waiting for core.ready: %w", err))
					return false
				}
				if n > 0 {
					budget -= n
					continue
				}
			}
			break
		}
		p, err := frame.Peek(f.Body)
		if err == nil && p.Type == frame.TypeReady {
			m, err := frame.Decode(f.Raw)
			if err != nil {
				r.fail(fmt.Errorf("relay: core.ready from the guest cannot be decoded: %w", err))
				return false
			}
			r.ready = append([]byte(nil), f.Raw...)
			r.g.done()
			r.becomeReady(m.Version)
			return true
		}
		if err == nil && p.Type == frame.TypeInitResolved {
			// A 0.6+ guest waits for the ack before it sends ready. What
			// the payload says (a uid map for shared volumes) is the VMM's
			// business.
			r.g.done()
			ack, err := initAckFrame(p.Version)
			if err == nil && !r.ctl.reserve(len(ack)) {
				err = errors.New("no room")
			}
			if err != nil {
				r.fail(fmt.Errorf("relay: answering core.init.resolved: %w", err))
				return false
			}
			r.ctl.append(ack)
			r.q.add(ctlSource)
			r.writeGuest()
			r.log.Info("guest resolved its init context; acknowledged", "v", p.Version)
			continue
		}
		r.discarded++
		r.log.Debug("discarding frame before core.ready", "id", f.ID, "type", p.Type.String())
		r.g.done()
	}
	if r.port.drained() {
		r.fail(errors.New("relay: guest stream ended before core.ready"))
		return false
	}
	if r.port.readerGone() {
		r.fail(errors.New("relay: guest stopped reading before core.ready"))
		return false
	}
	return !r.port.armRead()
}

// becomeReady settles the handshake from core.ready and starts serving.
func (r *Relay) becomeReady(v uint64) {
	r.form = chooseForm(r.opt.Handshake, v)
	r.ctl.max = ctlBound(r.form.slots, r.opt.MaxSessionsTotal, len(r.killFrame))
	r.stats.slots.Store(uint64(r.form.slots))
	r.stats.handshake.Store(uint64(r.form.hs))
	r.loop.Cancel(&r.readyTimer)
	r.log.Info("guest ready", "after", r.loop.Now().Sub(r.waitStart).Round(time.Millisecond), "discarded_frames", r.discarded,
		"v", v, "handshake", r.form.hs.String(), "slots", r.form.slots, "disconnect_notices", r.form.notify)
	if r.opt.ExecLog != nil {
		r.opt.ExecLog.System("--- sandbox started ---")
	}
	if err := r.start(); err != nil {
		r.fail(err)
		return
	}
	r.state.Store(uint32(StateServing))
	close(r.readyCh)
}

// fail ends a relay that cannot go on: the guest never became ready, or
// the loop could not watch its socket.
func (r *Relay) fail(err error) {
	r.err = err
	r.log.Warn("relay failed", "err", err)
	r.teardown(StateGuestGone, "relay failed")
}

// Run serves clients until Stop, ctx's end, or the end of the guest stream
// (ErrGuestClosed), driving the relay's own loop: the calling goroutine is
// locked to its OS thread for the duration. On return the socket is
// removed and every client is closed. For a relay made with New.
func (r *Relay) Run(ctx context.Context) error {
	if !r.l.private {
		return errors.New("relay: Run is for a relay made with New; its Loop runs a Loop's relay")
	}
	if r.ready == nil {
		return errors.New("relay: Run called before WaitReady succeeded")
	}
	if r.ran {
		return errors.New("relay: Run called twice")
	}
	r.ran = true
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			r.Stop()
		case <-done:
		}
	}()
	if err := r.l.Run(); err != nil {
		return err
	}
	return r.err
}

// start registers the listening socket: the relay serves from the next
// pass.
func (r *Relay) start() error {
	r.st = stateServing
	var err error
	if r.ln.tok, err = r.loop.Add(r.ln.fd, unix.EPOLLIN, listenHandler{r}); err != nil {
		return fmt.Errorf("relay: watch socket: %w", err)
	}
	r.ln.watched = true
	r.guestWake, r.guestReadable, r.guestWritable, r.ln.pending = true, true, true, true
	r.kick()
	return nil
}

// kick has the loop's next pass service r.
func (r *Relay) kick() {
	if !r.kicked {
		r.kicked = true
		r.l.active = append(r.l.active, r)
	}
}

// Stop stops accepting, flushes what is queued to clients for up to
// Options.DrainTimeout, closes them, and ends the relay (Run returns nil).
// Safe from any goroutine, any number of times.
func (r *Relay) Stop() {
	r.stopOnce.Do(func() {
		r.loop.Submit(func() { r.drain(nil, "relay stopping") })
	})
}

// Close ends the relay at once: its clients are closed and their sessions
// killed in the guest, its socket removed and its fds freed. It returns at
// once; Done says when it is over. Safe from any goroutine, any number of
// times.
func (r *Relay) Close() {
	r.closeOnce.Do(func() {
		r.loop.Submit(func() { r.teardown(StateStopped, "relay closed") })
	})
}

// State reports where the relay is in its life. Safe from any goroutine.
func (r *Relay) State() State { return State(r.state.Load()) }

// Err reports why the relay ended, or nil. Safe from any goroutine once Done
// is closed.
func (r *Relay) Err() error {
	if p := r.endErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Ready is closed once the relay serves clients.
func (r *Relay) Ready() <-chan struct{} { return r.readyCh }

// Done is closed once the relay has ended: clients closed, fds freed,
// socket removed.
func (r *Relay) Done() <-chan struct{} { return r.doneCh }

// teardown ends the relay on the loop thread: every client is closed (their
// sessions' SIGKILLs go to the guest if it takes them now), the listener,
// the guest port and the timers are released, and the side goroutine
// unlinks the socket and closes Done. What was flushable was flushed
// before (drain) or is given up on (Close).
func (r *Relay) teardown(s State, why string) {
	if r.st == stateDone {
		return
	}
	waiting := r.st == stateWaiting || r.st == stateNew
	r.st = stateDone
	for _, c := range r.cl.conns {
		if c.live {
			if c.out.len() > 0 {
				r.log.Warn("client output not flushed before stop", "slot", c.slot, "bytes", c.out.len())
			}
			r.disconnect(c, why, nil)
		}
	}
	if !r.guestEnded && !r.q.empty() && !r.port.readerGone() {
		r.writeGuest() // the SIGKILLs, as far as the guest takes them now
	}
	r.closeListener()
	r.waiting.closeAll()
	for _, t := range []*reactor.Timer{&r.readyTimer, &r.waitTimer, &r.drainTimer, &r.qTimer, &r.stall.timer, &r.ln.retry, &r.sweepTimer} {
		r.loop.Cancel(t)
	}
	r.port.deregister(r.loop)
	r.port.close()
	r.q.clear()
	r.ctl.release()
	for _, c := range r.cl.conns {
		if c != &vacant {
			c.in.release()
			c.out.release()
		}
	}
	r.stats.publish(&r.pend)
	if r.err != nil {
		err := r.err
		r.endErr.Store(&err)
	}
	if waiting && s == StateStopped {
		r.log.Info("relay stopped before the guest was ready")
	}
	r.state.Store(uint32(s))
	if r.member >= 0 {
		r.l.leave(r)
	}
	sock, log, done, onDone := r.opt.Socket, r.log, r.doneCh, r.opt.OnDone
	r.l.side.push(func() {
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("remove socket", "socket", sock, "err", err)
		}
		if onDone != nil {
			onDone()
		}
		close(done)
	})
}

// drain begins an orderly stop: no new clients, no more reading from clients
// or the guest, queued output flushed until empty or the deadline.
func (r *Relay) drain(err error, why string) {
	if r.st == stateWaiting {
		r.err = err
		r.teardown(StateStopped, why)
		return
	}
	if r.st != stateServing {
		return
	}
	r.st = stateDraining
	r.err = err
	r.log.Info(why, "clients", r.stats.clientsActive.Load(), "flush_deadline", r.opt.DrainTimeout)
	r.closeListener()
	r.waiting.closeAll()
	r.loop.Cancel(&r.waitTimer)
	r.loop.Schedule(&r.drainTimer, r.loop.Now().Add(r.opt.DrainTimeout), func(time.Time) { r.finish() })
	r.kick()
}

func (r *Relay) finish() {
	s := StateStopped
	if errors.Is(r.err, ErrGuestClosed) {
		s = StateGuestGone
	}
	r.teardown(s, "relay stopping")
}

func (r *Relay) closeListener() {
	if r.ln.fd < 0 {
		return
	}
	if r.ln.watched {
		r.loop.Remove(r.ln.tok)
		r.ln.watched = false
	}
	unix.Close(r.ln.fd)
	r.ln.fd = -1
}

// service is the loop's idle pass: it runs once per iteration after the
// events of one epoll_wait have been recorded, in fixed phases, each within
// a budget, and reports busy when work is left over (the next epoll_wait
// then does not sleep).
func (r *Relay) service(now time.Time) bool {
	switch r.st {
	case stateDone, stateNew:
		return false
	case stateWaiting:
		busy := r.awaitReady()
		if r.st != stateDone && !r.g.have {
			r.port.settle()
		}
		return busy
	}
	// 1. New connections.
	if r.ln.pending && r.st == stateServing {
		r.acceptAll()
	}
	// 2. Host → guest, then guest → clients.
	moreFromGuest := false
	if r.st == stateServing {
		r.pumpToGuest()
		r.guestWake = false
		moreFromGuest = r.pumpFromGuest()
	} else {
		r.writeGuest() // draining: what is queued still goes
	}
	// Clients put off for the input budget are read again once buffers
	// have shrunk since.
	if !r.cl.starved.empty() && r.inBudget.Used() < r.cl.starvedAt {
		r.cl.readable.addAll(&r.cl.starved)
		r.cl.starved = slotSet{}
	}
	// 3. SIGKILLs queued by the disconnects of this pass.
	if !r.q.empty() {
		r.writeGuest()
	}
	// 4. Slots freed in this pass go to waiting connections; their
	// handshakes go out with the flush below.
	if r.waitersDue {
		r.waitersDue = false
		r.serveWaiters()
	}
	// 5. One write per client with output.
	stalledQueue := -1
	if r.stall.slot >= 0 {
		stalledQueue = r.cl.conns[r.stall.slot].out.len()
	}
	r.flushDirty()
	if !r.sweepTimer.Scheduled() {
		r.loop.Schedule(&r.sweepTimer, now.Add(sweepAfter), r.sweepFn)
	}
	if r.port.readerGone() {
		r.guestEnd() // the guest stopped reading: nothing more can reach it
	}
	r.stats.publish(&r.pend)
	if r.st == stateDraining && r.flushed() {
		r.finish()
		return false
	}
	// 6. Sleep, or not.
	return r.busy(moreFromGuest, stalledQueue)
}

// busy decides whether the loop may sleep after a pass: not while any
// direction has work it can do without a new event.
func (r *Relay) busy(moreFromGuest bool, stalledQueue int) bool {
	if r.st == stateServing && !r.guestEnded {
		if r.stall.slot < 0 && (moreFromGuest || r.guestWake || !r.port.armRead()) {
			return true
		}
		if r.stall.slot >= 0 && r.cl.conns[r.stall.slot].out.len() < stalledQueue {
			return true // the client that held up the guest stream made room: retry now
		}
	}
	if !r.guestEnded && !r.q.empty() {
		return r.guestWritable // the guest made room since the last write
	}
	return !r.cl.readable.empty() && r.st == stateServing
}

func (r *Relay) flushed() bool {
	// Once the guest is gone, what was bound for it can never arrive.
	if !r.guestEnded && !r.q.empty() {
		return false
	}
	for _, c := range r.cl.conns {
		if c.live && c.out.len() > 0 {
			return false
		}
	}
	return true
}

// sweepAfter is how long a relay keeps buffers that have emptied: a
// streaming sandbox reuses its own without touching the pool each pass, an
// idle one has given everything back within it.
const sweepAfter = 50 * time.Millisecond

// sweep gives the pool back the guest read buffer and the clients' buffers
// that are empty, and looks again later while anything is still held.
func (r *Relay) sweep(now time.Time) {
	if r.st == stateDone {
		return
	}
	if !r.g.have && r.cl.spans.empty() {
		r.port.settle()
	}
	r.idleBuffers()
	if r.holdsBuffers() {
		r.loop.Schedule(&r.sweepTimer, now.Add(sweepAfter), r.sweepFn)
	}
}

// holdsBuffers reports whether the guest port or a client holds a buffer.
func (r *Relay) holdsBuffers() bool {
	if r.port.holds() {
		return true
	}
	for s := r.cl.live.lowest(); s >= 0; s = r.cl.live.scan(s+1, MaxSlots) {
		if c := r.cl.conns[s]; c.in.b != nil || c.out.b != nil {
			return true
		}
	}
	return false
}

// idleBuffers gives the pool back the buffers of clients with nothing
// queued either way.
func (r *Relay) idleBuffers() {
	for s := r.cl.live.lowest(); s >= 0; s = r.cl.live.scan(s+1, MaxSlots) {
		c := r.cl.conns[s]
		if c.in.b != nil && c.in.len() == 0 {
			c.in.idle()
		}
		if c.out.b != nil && c.out.len() == 0 && len(c.span) == 0 {
			c.out.idle()
		}
	}
}

func (r *Relay) flushDirty() {
	for !r.cl.dirty.empty() {
		slot := r.cl.dirty.lowest()
		r.cl.dirty.remove(slot)
		c := r.cl.conns[slot]
		if !c.live {
			continue
		}
		if c.werr != nil {
			c.dropped += c.out.len() // its socket takes no more
			c.out.reset()
			continue
		}
		if err := c.flush(); err != nil {
			r.writeFailed(c, err)
		}
	}
}

// notifyShutdown tells the owner that a core.shutdown reached the guest.
func (r *Relay) notifyShutdown(slot int) {
	r.stats.shutdowns.Add(1)
	r.log.Info("client sent core.shutdown; notifying owner", "slot", slot)
	select {
	case r.shutdownCh <- struct{}{}:
	default: // one pending notification says it all
	}
}

func (r *Relay) corruptStart(badLen uint32) {
	r.stats.corruptIncidents.Add(1)
	r.log.Warn("corrupt guest framing; resynchronising", "length", badLen, "min", frame.MinLen, "max", frame.MaxLen)
}

func (r *Relay) corruptEnd(skipped uint64) {
	r.stats.corruptBytes.Add(skipped)
	r.log.Info("guest stream resynchronised", "skipped_bytes", skipped)
}

// listenHandler records that the listening socket has connections. It is
// one pointer wide, so storing it in the reactor's Handler interface does not
// allocate.
type listenHandler struct{ r *Relay }

func (h listenHandler) OnEvent(uint32) {
	h.r.ln.pending = true
	h.r.kick()
}
