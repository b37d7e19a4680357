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
const (
	toGuestBudget   = 1 << 20
	fromGuestBudget = 1 << 20
	readChunk       = 256 << 10 // most bytes one client read takes per turn
	initialBuffer   = 64 << 10
	defaultPoolIdle = 16 << 20 // idle buffers a relay's own pool keeps: two maximum frames each way
)

type state uint8

const (
	stateNew state = iota
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
	logq *logQueue
	loop *reactor.Loop

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

	// Life on a Loop, as its owner sees it.
	state           atomic.Uint32 // a State
	endErr          atomic.Pointer[error]
	readyCh, doneCh chan struct{}
	closeCh         chan struct{}
	closeOnce       sync.Once
	closing         atomic.Bool
}

// ctlBound bounds the relay's own frames waiting for the guest: a SIGKILL
// for every session and a disconnect notice per slot.
func ctlBound(slots, sessions, killLen int) int {
	return sessions*killLen + slots*64 + 4096
}

// New binds the client socket and prepares a relay; clients that connect
// before Run wait in the socket's backlog.
func New(opt Options) (*Relay, error) {
	opt.setDefaults()
	var port guestPort
	switch {
	case opt.Guest != nil && opt.Console != nil:
		return nil, errors.New("relay: set Options.Guest or Options.Console, not both")
	case opt.Guest != nil:
		p, err := newFdPort(opt.Guest)
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		port = p
	case opt.Console != nil && opt.Console.Tx != nil && opt.Console.Rx != nil:
		port = newRingPort(opt.Console)
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
	loop, err := reactor.New()
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r := &Relay{
		opt:        opt,
		loop:       loop,
		port:       port,
		g:          newGuestReader(port.source(), port.linear()),
		direct:     port.linear(),
		ln:         listener{fd: -1},
		stall:      guestStall{slot: -1},
		q:          newGuestQueue(),
		waiting:    newAcceptQueue(opt.AcceptQueue),
		killFrame:  kill,
		ctl:        newFixedBuffer(4096, ctlBound(MaxSlots, opt.MaxSessionsTotal, len(kill))),
		sess:       newSessionTable(opt.MaxSessions, opt.MaxSessionsTotal),
		shutdownCh: make(chan struct{}, 1),
		closeCh:    make(chan struct{}),
	}
	r.ln.allow = opt.AllowUIDs
	if r.ln.allow == nil {
		r.ln.allow = []uint32{uint32(os.Geteuid()), 0}
	}
	port.bind(r)
	r.logq = newLogQueue(logQueueLen)
	r.log = slog.New(&asyncHandler{next: opt.Logger.Handler(), q: r.logq, dropped: &r.stats.logDrops})
	r.g.onCorrupt = r.corruptStart
	r.g.onResync = r.corruptEnd
	if opt.ExecLog != nil {
		r.lane = opt.ExecLog.Lane()
	}
	if r.pool = opt.Pool; r.pool == nil {
		r.pool = bufpool.New(defaultPoolIdle)
	}
	r.outBudget = bufpool.NewBudget(opt.OutputBudget, opt.Budget)
	r.inBudget = bufpool.NewBudget(opt.InputBudget, opt.Budget)
	for i := range r.cl.conns {
		r.cl.conns[i] = conn{r: r, slot: i, fd: -1,
			in:  newBuffer(initialBuffer, frame.MaxFrame, r.pool, r.inBudget),
			out: newBuffer(initialBuffer, opt.ClientBuffer, r.pool, r.outBudget)}
	}
	if r.ln.fd, err = listen(opt.Socket); err != nil {
		port.close()
		loop.Close()
		r.logq.close()
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

// WaitReady reads the guest stream until core.ready, discarding anything
// before it, and caches the frame for every client handshake. It fails after
// Options.ReadyTimeout, when ctx ends, or when the guest stream ends first.
func (r *Relay) WaitReady(ctx context.Context) error {
	start := time.Now()
	deadline := start.Add(r.opt.ReadyTimeout)
	discarded := 0
	ring, _ := r.port.(*ringPort)
	r.guestReadable = true
	for {
		if ring != nil {
			ring.tx.DrainData()
		}
		for {
			budget := fromGuestBudget
			f, ok := r.g.next(&budget)
			if !ok {
				if budget <= 0 {
					continue
				}
				break
			}
			p, err := frame.Peek(f.Body)
			if err == nil && p.Type == frame.TypeReady {
				m, err := frame.Decode(f.Raw)
				if err != nil {
					return fmt.Errorf("relay: core.ready from the guest cannot be decoded: %w", err)
				}
				r.ready = append([]byte(nil), f.Raw...)
				r.g.done()
				r.form = chooseForm(r.opt.Handshake, m.Version)
				r.ctl.max = ctlBound(r.form.slots, r.opt.MaxSessionsTotal, len(r.killFrame))
				r.stats.slots.Store(uint64(r.form.slots))
				r.stats.handshake.Store(uint64(r.form.hs))
				r.log.Info("guest ready", "after", time.Since(start).Round(time.Millisecond), "discarded_frames", discarded,
					"v", m.Version, "handshake", r.form.hs.String(), "slots", r.form.slots, "disconnect_notices", r.form.notify)
				if r.opt.ExecLog != nil {
					r.opt.ExecLog.System("--- sandbox started ---")
				}
				return nil
			}
			if err == nil && p.Type == frame.TypeInitResolved {
				// A 0.6+ guest waits for the ack before it sends ready.
				// What the payload says (a uid map for shared volumes) is
				// the VMM's business.
				r.g.done()
				ack, err := initAckFrame(p.Version)
				if err == nil {
					err = r.port.sendBeforeRun(ack, deadline)
				}
				if err != nil {
					return fmt.Errorf("relay: answering core.init.resolved: %w", err)
				}
				r.log.Info("guest resolved its init context; acknowledged", "v", p.Version)
				continue
			}
			discarded++
			r.log.Debug("discarding frame before core.ready", "id", f.ID, "type", p.Type.String())
			r.g.done()
		}
		if r.port.linear() && r.guestReadable {
			n, err := r.port.fill(r.g.wanted())
			if err != nil {
				return fmt.Errorf("relay: waiting for core.ready: %w", err)
			}
			if n > 0 {
				continue
			}
		}
		if r.port.drained() {
			return errors.New("relay: guest stream ended before core.ready")
		}
		if !r.port.armRead() {
			continue
		}
		now := time.Now()
		if !now.Before(deadline) {
			return fmt.Errorf("relay: timed out after %s waiting for core.ready from the guest", r.opt.ReadyTimeout)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("relay: waiting for core.ready: %w", err)
		}
		wait := min(deadline.Sub(now), 100*time.Millisecond) // short slices keep ctx responsive
		fds := []unix.PollFd{{Fd: int32(r.port.waitFd()), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(wait/time.Millisecond)+1); err != nil && err != unix.EINTR {
			return fmt.Errorf("relay: waiting for core.ready: poll: %w", err)
		}
		r.guestReadable = true
	}
}

// Run serves clients until Stop, ctx's end, or the end of the guest stream
// (ErrGuestClosed). The calling goroutine becomes the loop: it is locked to
// its OS thread for the duration. On return the socket is removed and every
// client is closed.
func (r *Relay) Run(ctx context.Context) error {
	if r.ready == nil {
		return errors.New("relay: Run called before WaitReady succeeded")
	}
	if r.st != stateNew {
		return errors.New("relay: Run called twice")
	}
	defer r.cleanup()
	if err := r.start(); err != nil {
		return err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			r.Stop()
		case <-done:
		}
	}()
	if err := r.loop.Run(); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return r.err
}

// start registers the relay's fds with the loop; Run then runs it.
func (r *Relay) start() error {
	r.st = stateServing
	var err error
	if r.ln.tok, err = r.loop.Add(r.ln.fd, unix.EPOLLIN, listenHandler{r}); err != nil {
		return fmt.Errorf("relay: watch socket: %w", err)
	}
	r.ln.watched = true
	if err := r.port.register(r.loop); err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r.loop.SetIdle(r.service)
	r.guestWake, r.guestReadable, r.guestWritable, r.ln.pending = true, true, true, true
	// The loop waits for an event before its first idle pass, and guest
	// bytes that arrived after WaitReady raised none (the ring's consumer
	// was not asleep): have the first pass run at once.
	r.loop.Submit(func() {})
	return nil
}

// Stop stops accepting, flushes what is queued to clients for up to
// Options.DrainTimeout, closes them, and makes Run return nil. Safe from any
// goroutine, any number of times.
func (r *Relay) Stop() {
	r.stopOnce.Do(func() { r.loop.Submit(func() { r.drain(nil, "relay stopping") }) })
}

// cleanup runs on Run's goroutine after the loop has stopped, so the disk
// I/O of unlinking the socket happens off the loop.
func (r *Relay) cleanup() {
	r.st = stateDone
	for i := range r.cl.conns {
		if c := &r.cl.conns[i]; c.live {
			r.disconnect(c, "relay stopped", nil)
		}
	}
	r.closeListener()
	r.waiting.closeAll()
	if err := os.Remove(r.opt.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("remove socket", "socket", r.opt.Socket, "err", err)
	}
	r.stats.publish(&r.pend)
	r.loop.Close()
	r.port.close()
	r.logq.close()
}

// drain begins an orderly stop: no new clients, no more reading from clients
// or the guest, queued output flushed until empty or the deadline.
func (r *Relay) drain(err error, why string) {
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
}

func (r *Relay) finish() {
	if r.st == stateDone {
		return
	}
	r.st = stateDone
	for i := range r.cl.conns {
		if c := &r.cl.conns[i]; c.live {
			if c.out.len() > 0 {
				r.log.Warn("client output not flushed before stop", "slot", c.slot, "bytes", c.out.len())
			}
			r.disconnect(c, "relay stopping", nil)
		}
	}
	r.loop.Stop()
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
	if r.st == stateDone {
		return false
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
	for i := range r.cl.conns {
		if c := &r.cl.conns[i]; c.live && c.out.len() > 0 {
			return false
		}
	}
	return true
}

func (r *Relay) flushDirty() {
	for !r.cl.dirty.empty() {
		slot := r.cl.dirty.lowest()
		r.cl.dirty.remove(slot)
		c := &r.cl.conns[slot]
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

func (h listenHandler) OnEvent(uint32) { h.r.ln.pending = true }
