package relay

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/reactor"
)

// clientTable is the client slots and what the loop pass needs to know of
// them at a glance.
type clientTable struct {
	conns     [MaxSlots]*conn // &vacant until the slot's first client
	live      slotSet         // a client is attached
	readable  slotSet         // its socket may have bytes (or its end) to read
	dirty     slotSet         // its output buffer has bytes to write
	spans     slotSet         // it has a span (see conn.span)
	starved   slotSet         // its next read needs more than the input budget has left
	starvedAt int64           // the input budget's use when the last client starved
	rr        int             // round-robin cursor over readable clients
}

// conn is one client slot. A slot's conn is made for its first client and
// reused by the next ones, so connecting allocates only once per slot: a
// relay that never had a client holds none of the 128. Its buffers are
// lent by the loop's pool only while a client is attached.
type conn struct {
	r    *Relay
	slot int
	fd   int
	tok  reactor.Token
	live bool

	// in holds bytes read from the client: first queued bytes of whole
	// frames checked and waiting for the guest (see guestQueue), then
	// whatever has not been checked yet.
	in         buffer
	queued     int
	shutdownAt int // queued bytes up to the end of a core.shutdown; 0 if none

	// out holds frames for the client, bounded by Options.ClientBuffer.
	// While it is empty, frames may instead be written straight from the
	// fd port's buffer: span is such a run of contiguous frames, written
	// (and what the socket does not take copied to out) before that buffer
	// is refilled.
	out  buffer
	span []byte

	// hup records that epoll reported the peer's hang-up. With edge
	// triggering that edge comes once, often together with the last data,
	// so after it the socket is read until EOF whatever a short read says.
	hup bool

	// werr is set when the socket refused a write (EPIPE: the peer closed or
	// shut its read side). The client is then read until its input is
	// drained or ends, so that what it sent before still reaches the guest,
	// and disconnected; output for it is discarded meanwhile (dropped
	// counts it, for the log).
	werr    error
	dropped int

	outArmed bool // EPOLLOUT is in the registration (see armOut)

	peerUID, peerPID int32
	since            time.Time

	// full marks the start of a period in which this client's output buffer
	// held up the guest stream; it is cleared only once the buffer has
	// drained below half, so a client that reads a trickle cannot stall
	// everyone indefinitely by freeing just enough each time.
	full      bool
	fullSince time.Time
}

// vacant stands in every slot that never had a client: never live, never
// written to, so the routing paths need no nil check.
var vacant = conn{slot: -1, fd: -1}

// OnEvent records readiness; the work happens in the loop's idle pass so
// that every client's frames of one epoll batch go out in one write.
func (c *conn) OnEvent(ev uint32) {
	r := c.r
	r.kick()
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		r.cl.readable.add(c.slot)
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.hup = true
	}
	if ev&unix.EPOLLOUT != 0 && c.out.len() > 0 {
		r.cl.dirty.add(c.slot)
	}
}

// clientEvents is what a client's registration starts with. EPOLLOUT joins
// only once a write has come back EAGAIN (armOut): with it from the start,
// every read by the client would wake the loop for nothing, an epoll_wait
// and a context switch per round trip.
const clientEvents = unix.EPOLLIN | unix.EPOLLRDHUP

// armOut adds EPOLLOUT to c's registration, once: the socket has shown it
// can fill, so its draining must now be heard. EPOLL_CTL_MOD reports room
// that came back meanwhile, so no wake-up is lost.
func (c *conn) armOut() {
	if c.outArmed {
		return
	}
	if err := c.r.loop.Modify(c.tok, clientEvents|unix.EPOLLOUT); err != nil {
		c.r.log.Error("cannot watch client for room to write", "slot", c.slot, "err", err)
		return
	}
	c.outArmed = true
}

// flush writes queued output until it is gone or the socket is full. With
// edge-triggered epoll the socket must be written until EAGAIN; EPOLLOUT
// then says when to go on.
func (c *conn) flush() error {
	for c.out.len() > 0 {
		n, err := sysWrite(c.fd, c.out.bytes())
		if n > 0 {
			c.out.consume(n)
		}
		switch err {
		case nil:
		case unix.EINTR:
		case unix.EAGAIN:
			c.armOut()
			return nil
		default:
			return err
		}
	}
	if c.full && c.out.len() < c.out.max/2 {
		c.full = false
		c.r.stats.guestStallNanos.Add(uint64(c.r.loop.Now().Sub(c.fullSince)))
	}
	return nil
}

// writeFailed handles a client whose socket refused a write. Frames it sent
// before still go to the guest, as after an EOF (it may have sent
// core.shutdown and hung up): its socket is read until it is drained or
// ends, and then it is disconnected (serveClient, disconnectAfterFrames).
func (r *Relay) writeFailed(c *conn, err error) {
	c.werr = err
	c.dropped += c.out.len()
	c.out.reset()
	c.hup = true // read on after short reads: no edge may come
	r.cl.readable.add(c.slot)
}
