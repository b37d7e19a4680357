package relay

import (
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// Client → guest. Frames are forwarded whole, one at a time, so frames of
// different clients never interleave in the guest's byte stream. When Rx is
// full the rest of the current frame waits in rxCur and no client is read
// until the guest has drained the ring: the clients' sockets then apply
// back-pressure and nothing is dropped.

func lowestBit(m uint16) int { return bits.TrailingZeros16(m) }

// nextBit returns the first set bit of m at or after from, wrapping.
func nextBit(m uint16, from int) int {
	rot := bits.RotateLeft16(m, -from)
	return (from + bits.TrailingZeros16(rot)) & (frame.MaxClients - 1)
}

// writeRx pushes what is pending for the guest — the rest of a partly
// written frame, then relay-made frames — and reports whether Rx can take
// client frames now.
func (r *Relay) writeRx() bool {
	if len(r.rxCur) > 0 {
		n := r.rx.Write(r.rxCur)
		r.rxCur = r.rxCur[n:]
		if len(r.rxCur) > 0 {
			return false
		}
		r.rxCur = nil
		if r.rxShutdown {
			r.rxShutdown = false
			r.notifyShutdown(r.rxOwner)
		}
		r.rxOwner = -1
	}
	if r.ctl.len() > 0 {
		n := r.rx.Write(r.ctl.bytes())
		r.ctl.consume(n)
		if r.ctl.len() > 0 {
			r.blockRx()
			return false
		}
	}
	if r.rxBlocked {
		r.rxBlocked = false
		r.stats.ringFullNanos.Add(uint64(r.loop.Now().Sub(r.rxBlockedSince)))
	}
	return true
}

func (r *Relay) blockRx() {
	if !r.rxBlocked {
		r.rxBlocked = true
		r.rxBlockedSince = r.loop.Now()
	}
}

// pumpToGuest gives each readable client a turn, round-robin, until none is
// left, Rx is full, or the pass's budget is spent.
func (r *Relay) pumpToGuest() {
	if !r.writeRx() {
		return
	}
	budget := toGuestBudget
	for r.readable != 0 && budget > 0 {
		slot := nextBit(r.readable, r.rr)
		r.rr = (slot + 1) & (frame.MaxClients - 1)
		c := &r.conns[slot]
		if !c.live {
			r.readable &^= 1 << slot
			continue
		}
		if !r.serveClient(c, &budget) {
			return
		}
	}
}

// serveClient forwards c's buffered frames, reads once, and forwards again.
// It reports false when Rx is full.
func (r *Relay) serveClient(c *conn, budget *int) bool {
	if !r.forwardFrames(c) {
		return false
	}
	if !c.live {
		return true
	}
	bit := uint16(1) << c.slot
	room := initialBuffer
	if b := c.in.bytes(); len(b) >= frame.LenSize {
		if n, err := frame.Len(b); err == nil && n-len(b) > room {
			room = n - len(b)
		}
	}
	// Never ask for more than the bound leaves: near the end of a frame
	// close to the maximum, the rest of it is all that may come before it
	// is forwarded.
	room = min(room, c.in.max-c.in.len())
	if !c.in.reserve(room) {
		// Cannot happen: input holds at most one partial frame and room
		// is clamped to what its bound leaves.
		r.protocolError(c, errors.New("input buffer overrun"))
		return true
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
			r.readable &^= bit
		}
	case err == nil:
		r.disconnectAfterFrames(c)
		return true
	case err == unix.EAGAIN:
		r.readable &^= bit
		if c.werr != nil {
			// Its write side failed and everything it sent is in.
			r.disconnect(c, "write failed", c.werr)
		}
		return true
	case err == unix.EINTR:
		return true
	default:
		r.disconnect(c, "read failed", err)
		return true
	}
	return r.forwardFrames(c)
}

// disconnectAfterFrames handles a client's EOF: whatever complete frames it
// sent before closing still go to the guest (a client may send core.shutdown
// and hang up), a trailing partial frame is discarded.
func (r *Relay) disconnectAfterFrames(c *conn) {
	if !r.forwardFrames(c) {
		// Rx full: keep the connection until its frames are through; the
		// socket stays readable (EOF) so the turn comes back.
		r.readable |= 1 << c.slot
		return
	}
	if c.live {
		if c.in.len() > 0 {
			r.log.Info("client left mid-frame; partial frame discarded", "slot", c.slot, "bytes", c.in.len())
		}
		if c.werr != nil {
			r.disconnect(c, "write failed", c.werr)
		} else {
			r.disconnect(c, "closed by client", nil)
		}
	}
}

// forwardFrames sends c's complete buffered frames to the guest. It reports
// false when Rx is full (c's frames wait in its buffer), true otherwise,
// including when c had to be disconnected for a bad frame.
func (r *Relay) forwardFrames(c *conn) bool {
	for c.live {
		f, err := frame.Split(c.in.bytes())
		if err == frame.ErrIncomplete {
			return true
		}
		if err != nil {
			r.protocolError(c, err)
			return true
		}
		if !validID(c.slot, f.ID, f.Flags) {
			lo := uint32(c.slot) * frame.Step
			r.protocolError(c, fmt.Errorf("frame id %d (flags %#x) outside the client's range [%d, %d)", f.ID, f.Flags, lo+1, lo+frame.Step))
			return true
		}
		if f.Flags&frame.FlagSessionStart == 0 && c.quarantined > 0 && r.quarantinedID(f.ID) {
			// stdin, a signal or a TERMINAL for a departed client's
			// session, still dying in the guest: as foreign as another
			// slot's id. (Checked only while the slot holds such
			// sessions, so the common case costs no lookup.)
			r.protocolError(c, fmt.Errorf("frame id %d (flags %#x) addresses a departed client's session", f.ID, f.Flags))
			return true
		}
		if f.Flags&frame.FlagSessionStart != 0 && !r.openSession(c, f) {
			if c.live {
				c.in.consume(len(f.Raw)) // refused and answered; next frame
				continue
			}
			return true
		}
		if f.Flags&frame.FlagTerminal != 0 {
			r.closeClientSession(c, f.ID)
		}
		// The frame leaves c.in now even if Rx takes only part of it: the
		// rest stays valid in place because no client is read while rxCur
		// is pending, and disconnect copies it to spill.
		c.in.consume(len(f.Raw))
		r.stats.framesToGuest.Add(1)
		r.stats.bytesToGuest.Add(uint64(len(f.Raw)))
		shutdown := f.Flags&frame.FlagShutdown != 0
		n := r.rx.Write(f.Raw)
		if n < len(f.Raw) {
			r.rxCur, r.rxOwner, r.rxShutdown = f.Raw[n:], c.slot, shutdown
			r.blockRx()
			// Its next frames wait in c.in: keep its turn, whatever the
			// socket says.
			r.readable |= 1 << c.slot
			return false
		}
		if shutdown {
			r.notifyShutdown(c.slot)
		}
	}
	return true
}

// protocolError disconnects a client that broke the protocol. Frames it sent
// before the bad one have been forwarded; nothing of anyone else's is lost.
func (r *Relay) protocolError(c *conn, err error) {
	r.stats.protocolErrors.Add(1)
	r.disconnect(c, "protocol error", err)
}
