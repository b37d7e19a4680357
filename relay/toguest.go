package relay

import (
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// Client → guest. Each readable client gets one turn per loop pass: one
// read, and its complete frames are checked, session-tracked and queued for
// the guest where they lie, at the head of the client's input buffer. Then
// everything queued goes out with one writev (fd port) or ring copy (ring
// port). A source's queued bytes are whole frames written contiguously, so
// frames of different clients never interleave in the guest's stream. When
// the guest takes no more, the rest stays queued, no client is read (their
// sockets push back) and writing resumes when the guest makes room:
// nothing is ever dropped.

// ctlSource names the relay's own frames (SIGKILLs) in a guestQueue.
const ctlSource = -1

// guestQueue is the order in which queued bytes go to the guest: sources
// (a client slot, or ctlSource) with bytes queued, each once. The head may be
// partly written; it stays the head until its bytes are all out, so a frame
// begun is always finished before another source's.
type guestQueue struct {
	order []int
	iov   [][]byte // scratch for one writev, allocated once

	blocked      bool // the guest took less than was queued
	blockedSince time.Time
}

func (q *guestQueue) clear() {
	q.order = q.order[:0]
	q.blocked = false
}

func (q *guestQueue) empty() bool { return len(q.order) == 0 }

// add puts src at the back unless it is already queued.
func (q *guestQueue) add(src int) {
	for _, s := range q.order {
		if s == src {
			return
		}
	}
	q.push(src)
}

// push appends src, which is not queued.
func (q *guestQueue) push(src int) {
	if q.order == nil { // a relay whose clients never sent anything has none
		q.order = make([]int, 0, MaxSlots+1)
		q.iov = make([][]byte, 0, MaxSlots+1)
	}
	q.order = append(q.order, src)
}

func (q *guestQueue) pop() {
	copy(q.order, q.order[1:])
	q.order = q.order[:len(q.order)-1]
}

// queued returns src's bytes waiting for the guest.
func (r *Relay) queued(src int) []byte {
	if src == ctlSource {
		return r.ctl.bytes()
	}
	c := r.cl.conns[src]
	return c.in.bytes()[:c.queued]
}

// writeGuest writes what is queued until the queue is empty or the guest
// takes no more. It reports whether the queue is empty.
func (r *Relay) writeGuest() bool {
	q := &r.q
	if q.blocked && !r.guestWritable {
		return false
	}
	for !q.empty() {
		iov := q.iov[:0]
		for _, src := range q.order {
			iov = append(iov, r.queued(src))
		}
		n, err := r.port.writev(iov)
		clear(iov)
		if err != nil {
			r.guestWriteFailed(err)
			return false
		}
		r.written(n)
		if n == 0 {
			if !q.blocked {
				q.blocked, q.blockedSince = true, r.loop.Now()
			}
			r.guestWritable = false
			if !r.port.armWrite() {
				r.guestWritable = true // room came back already: the next pass retries
			}
			return false
		}
	}
	if q.blocked {
		q.blocked = false
		r.stats.ringFullNanos.Add(uint64(r.loop.Now().Sub(q.blockedSince)))
	}
	return true
}

// written takes n bytes the guest accepted off the front of the queue.
func (r *Relay) written(n int) {
	q := &r.q
	for n > 0 && !q.empty() {
		src := q.order[0]
		if src == ctlSource {
			k := min(n, r.ctl.len())
			r.ctl.consume(k)
			n -= k
			if r.ctl.len() == 0 {
				q.pop()
			}
			continue
		}
		c := r.cl.conns[src]
		k := min(n, c.queued)
		c.in.consume(k)
		c.queued -= k
		n -= k
		if c.shutdownAt > 0 {
			if c.shutdownAt -= k; c.shutdownAt <= 0 {
				c.shutdownAt = 0
				r.notifyShutdown(src)
			}
		}
		if c.queued == 0 {
			q.pop()
			if !c.live {
				c.in.release()
				r.waitersDue = true // the departed client's slot is free now
			}
		}
	}
}

// guestWriteFailed handles a guest that refused a write: its reader is gone.
func (r *Relay) guestWriteFailed(err error) {
	if !r.guestEnded {
		r.log.Warn("guest refused a write; its console is gone", "err", err)
	}
	r.guestEnd()
}

// pumpToGuest writes what is queued and, if the guest took it all, gives
// each readable client one turn, round-robin, within the pass's budget, then
// writes what they queued.
func (r *Relay) pumpToGuest() {
	if !r.writeGuest() {
		return
	}
	budget := r.l.share
	turns := r.cl.readable
	for !turns.empty() && budget > 0 {
		slot := turns.next(r.cl.rr, r.form.slots)
		turns.remove(slot)
		r.cl.rr = (slot + 1) % r.form.slots
		c := r.cl.conns[slot]
		if !c.live {
			r.cl.readable.remove(slot)
			continue
		}
		r.serveClient(c, &budget)
	}
	r.writeGuest()
}

// serveClient reads once from c and queues its complete frames.
func (r *Relay) serveClient(c *conn, budget *int) {
	room := initialBuffer
	if b := c.in.bytes()[c.queued:]; len(b) >= frame.LenSize {
		if n, err := frame.Len(b); err == nil && n-len(b) > room {
			room = n - len(b)
		}
	}
	// Never ask for more than the bound leaves: near the end of a frame
	// close to the maximum, the rest of it is all that may come before it
	// is queued.
	room = min(room, c.in.max-c.in.len())
	if room <= 0 {
		// Its queued frames fill the buffer: its turn comes back once
		// the guest has taken them.
		return
	}
	if !c.in.reserve(room) {
		// Room is clamped to what the bound leaves, so the input budget
		// refused: read this client again once buffers have shrunk.
		r.cl.readable.remove(c.slot)
		r.cl.starved.add(c.slot)
		r.cl.starvedAt = r.inBudget.Used()
		r.stats.inputStarved.Add(1)
		return
	}
	sp := c.in.space()
	if len(sp) > readChunk {
		sp = sp[:readChunk]
	}
	n, err := sysRead(c.fd, sp)
	switch {
	case n > 0:
		c.in.commit(n)
		*budget -= n
		// A short read drained the socket: the next byte will raise a new
		// edge. A full one may have left more behind; keep the turn. After
		// a hang-up there is no next edge: read on until EOF.
		if n < len(sp) && !c.hup {
			r.cl.readable.remove(c.slot)
		}
		r.queueFrames(c)
	case err == nil:
		// EOF: whatever complete frames it sent before closing still go
		// to the guest (a client may send core.shutdown and hang up); a
		// trailing partial frame is discarded.
		r.queueFrames(c)
		if c.live {
			if c.in.len() > c.queued {
				r.log.Info("client left mid-frame; partial frame discarded", "slot", c.slot, "bytes", c.in.len()-c.queued)
			}
			if c.werr != nil {
				r.disconnect(c, "write failed", c.werr)
			} else {
				r.disconnect(c, "closed by client", nil)
			}
		}
	case err == unix.EAGAIN:
		r.cl.readable.remove(c.slot)
		if c.werr != nil {
			// Its write side failed and everything it sent is in.
			r.disconnect(c, "write failed", c.werr)
		}
	case err == unix.EINTR:
	default:
		r.disconnect(c, "read failed", err)
	}
}

// queueFrames checks c's complete frames after those already queued and
// queues them for the guest. A bad frame disconnects c; the frames before it
// stay queued and reach the guest.
func (r *Relay) queueFrames(c *conn) {
	for c.live {
		r.queuePlain(c)
		f, err := frame.Split(c.in.bytes()[c.queued:])
		if err == frame.ErrIncomplete {
			return
		}
		if err != nil {
			r.protocolError(c, err)
			return
		}
		if !r.form.valid(c.slot, f.ID, f.Flags) {
			lo, hi := r.form.idRange(c.slot)
			r.protocolError(c, fmt.Errorf("frame id %d (flags %#x) outside the client's range [%d, %d)", f.ID, f.Flags, lo, hi))
			return
		}
		if f.Flags&frame.FlagSessionStart == 0 && r.sess.quarantined[c.slot] > 0 && r.sess.isQuarantined(f.ID) {
			// stdin, a signal or a TERMINAL for a departed client's
			// session, still dying in the guest: as foreign as another
			// slot's id. (Checked only while the slot holds such
			// sessions, so the common case costs no lookup.)
			r.protocolError(c, fmt.Errorf("frame id %d (flags %#x) addresses a departed client's session", f.ID, f.Flags))
			return
		}
		if f.Flags&frame.FlagSessionStart != 0 && !r.openSession(c, f) {
			if c.live {
				r.dropUnqueued(c, len(f.Raw)) // refused and answered; next frame
				continue
			}
			return
		}
		if f.Flags&frame.FlagTerminal != 0 {
			r.sess.endByClient(c.slot, f.ID)
			r.stats.sessionsActive.Store(uint64(r.sess.len()))
		}
		if c.queued == 0 {
			// A client is in the queue's order exactly while it has bytes
			// queued: no search needed.
			r.q.push(c.slot)
		}
		c.queued += len(f.Raw)
		if f.Flags&frame.FlagShutdown != 0 {
			c.shutdownAt = c.queued
		}
		r.pend.framesToGuest++
		r.pend.bytesToGuest += uint64(len(f.Raw))
	}
}

// queuePlain queues, in one sweep over their headers, the run of whole
// frames at the head of c's unchecked input that need nothing but their id
// checked: no flags, an id in c's range, and no departed client's session
// in c's slot that the id could name. It stops at anything else, which
// queueFrames then handles a frame at a time.
func (r *Relay) queuePlain(c *conn) {
	if r.sess.quarantined[c.slot] != 0 {
		return
	}
	b := c.in.bytes()[c.queued:]
	lo, hi := r.form.idRange(c.slot)
	k, frames := 0, uint64(0)
	for len(b)-k >= frame.HeaderSize {
		l := binary.BigEndian.Uint32(b[k:])
		n := frame.LenSize + int(l)
		if l < frame.MinLen || l > frame.MaxLen || len(b)-k < n {
			break
		}
		if id := binary.BigEndian.Uint32(b[k+frame.LenSize:]); b[k+frame.LenSize+4] != 0 || id < lo || id >= hi {
			break
		}
		k += n
		frames++
	}
	if k == 0 {
		return
	}
	if c.queued == 0 {
		r.q.push(c.slot)
	}
	c.queued += k
	r.pend.framesToGuest += frames
	r.pend.bytesToGuest += uint64(k)
}

// dropUnqueued removes n bytes that follow c's queued frames (a refused
// session start) from its input buffer.
func (r *Relay) dropUnqueued(c *conn, n int) {
	if c.queued == 0 {
		c.in.consume(n)
		return
	}
	b := c.in.bytes()
	copy(b[c.queued:], b[c.queued+n:])
	c.in.w -= n
}

// protocolError disconnects a client that broke the protocol. Frames it sent
// before the bad one are queued for the guest; nothing of anyone else's is
// lost.
func (r *Relay) protocolError(c *conn, err error) {
	r.stats.protocolErrors.Add(1)
	r.disconnect(c, "protocol error", err)
}
