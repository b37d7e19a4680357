package relay

import (
	"encoding/binary"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/reactor"
)

// Guest → client. Frames are routed by id range straight from the Tx ring
// into the owning client's output buffer. A client whose buffer is full holds
// up the one ordered guest stream, for at most Options.EvictGrace in all
// until it has drained below half; then it is evicted and everyone else
// carries on.

// pumpFromGuest routes guest frames until the guest has nothing more, a
// client's full buffer holds up the stream, or the pass's budget is spent; it
// reports true in the last case (work is left for the next pass).
func (r *Relay) pumpFromGuest() (more bool) {
	budget := r.l.share
	defer r.flushSpans()
	for {
		if r.g.lin != nil && !r.g.have && !r.g.resyncing && r.sess.len() == 0 && r.stall.slot < 0 {
			budget -= r.routePlain()
		}
		// A stalled frame is retried here: route reports false again, at
		// no cost, until its client has written enough out.
		f, ok := r.g.next(&budget)
		if !ok {
			if budget <= 0 {
				return true
			}
			if r.guestReadable && r.port.linear() {
				// The buffer is about to change under every span.
				r.flushSpans()
				n, err := r.port.fill(r.g.wanted())
				if err != nil && !r.guestEnded {
					r.log.Warn("guest console read failed", "err", err)
				}
				if n > 0 {
					budget -= n
					continue
				}
			}
			if r.port.drained() {
				r.guestEnd()
			}
			return false
		}
		if !r.route(f) {
			return false
		}
		budget -= len(f.Raw)
		r.g.done()
		if budget <= 0 {
			return true
		}
	}
}

// guestStall is the client whose full output buffer holds up the one
// ordered guest stream, if any, and the timer that evicts it.
type guestStall struct {
	slot  int // -1 if none
	timer reactor.Timer
}

// routePlain routes, in one sweep over their headers, the run of whole
// frames at the head of the fd port's buffer while no session is tracked
// (so no frame can be a quarantined session's, end one, or feed exec.log):
// each goes to its slot's client. It stops at a frame for an empty slot, one
// that does not fit its client, or a length the protocol forbids, which the
// frame-at-a-time path then handles. It returns the bytes it took.
func (r *Relay) routePlain() int {
	p := r.g.lin
	start := p.head
	for {
		a := p.in[p.head:p.tail]
		if len(a) < frame.HeaderSize {
			break
		}
		l := binary.BigEndian.Uint32(a)
		n := frame.LenSize + int(l)
		if l < frame.MinLen || l > frame.MaxLen || len(a) < n {
			break
		}
		c := r.cl.conns[r.form.slotOf(binary.BigEndian.Uint32(a[frame.LenSize:]))]
		if !c.live || r.deliver(c, a[:n:n]) != nil {
			break
		}
		p.head += n
		r.pend.framesToClient++
		r.pend.bytesToClient += uint64(n)
	}
	return p.head - start
}

func (r *Relay) guestEnd() {
	if r.guestEnded {
		return
	}
	r.guestEnded = true
	r.stats.guestEnded.Store(1)
	if r.g.partial() {
		r.log.Warn("guest stream ended mid-frame; partial frame discarded")
	}
	r.drain(ErrGuestClosed, "guest stream ended; closing clients")
}

// route delivers one guest frame, or drops it with a count when no client
// may have it. It reports false when the owning client's buffer is full; the
// frame is then retried after that client has written some out.
func (r *Relay) route(f frame.Frame) bool {
	var s session
	isSession := false
	if r.sess.len() > 0 { // a lookup even in an empty map costs the fan-in 5 %
		s, isSession = r.sess.get(f.ID)
	}
	terminal := f.Flags&frame.FlagTerminal != 0
	if isSession && s.quarantined {
		r.stats.quarantineDrops.Add(1)
		r.logDrop("quarantined session", f)
		if terminal {
			if s.exec {
				r.logExecEnd(f, s)
			}
			r.endSession(f.ID)
		}
		return true
	}
	slot := r.form.slotOf(f.ID)
	c := r.cl.conns[slot]
	if !c.live {
		r.stats.noClientDrops.Add(1)
		r.logDrop("no client in slot", f)
		return true
	}
	if stall := r.deliver(c, f.Raw); stall != nil {
		r.stallOn(stall)
		return false
	}
	if r.stall.slot >= 0 {
		r.stall.slot = -1
		r.loop.Cancel(&r.stall.timer)
	}
	r.pend.framesToClient++
	r.pend.bytesToClient += uint64(len(f.Raw))
	if isSession {
		if s.exec && r.lane != nil {
			r.tap(f, s)
		}
		if terminal {
			if s.exec {
				r.logExecEnd(f, s)
			}
			r.endSession(f.ID)
		}
	}
	return true
}

// deliver queues raw for c: as part of c's span when raw lies right after it
// in the fd port's buffer and nothing else waits for c, else in c's output
// buffer. When there is no room it returns the client to hold responsible:
// c if its own bound is reached, else (the output budget is) the client
// holding the most output.
//
// A span is given room in the (empty) output buffer before it grows, so that
// whatever its socket does not take can always be kept.
func (r *Relay) deliver(c *conn, raw []byte) *conn {
	if r.direct && c.out.len() == 0 && c.werr == nil && (len(c.span) == 0 || follows(c.span, raw)) {
		if n := len(c.span) + len(raw); n <= c.out.max && c.out.grow(n) {
			if len(c.span) == 0 {
				c.span = raw
				r.cl.spans.add(c.slot)
			} else {
				c.span = unsafe.Slice(unsafe.SliceData(c.span), n)
			}
			return nil
		}
	}
	if len(c.span) > 0 {
		// Another client's frames came between: keep one write per client
		// per pass by copying the span into the room made for it.
		c.out.append(c.span)
		c.span = nil
		r.cl.spans.remove(c.slot)
		r.cl.dirty.add(c.slot)
	}
	if !c.out.reserve(len(raw)) {
		if c.out.len()+len(raw) > c.out.max {
			return c
		}
		return r.largestOutput(c)
	}
	c.out.append(raw)
	r.cl.dirty.add(c.slot)
	return nil
}

// largestOutput returns the live client with the most output queued (c if
// none has more).
func (r *Relay) largestOutput(c *conn) *conn {
	hog := c
	for s := r.cl.live.lowest(); s >= 0; s = r.cl.live.scan(s+1, r.form.slots) {
		if o := r.cl.conns[s]; o.out.len() > hog.out.len() {
			hog = o
		}
	}
	return hog
}

// follows reports whether b starts right where a ends. Both are views of the
// fd port's buffer (frames cap their views at their own length, so the
// slices cannot simply be re-sliced), and that buffer neither moves nor
// changes until every span is flushed, so joining them is safe.
func follows(a, b []byte) bool {
	return unsafe.Add(unsafe.Pointer(unsafe.SliceData(a)), len(a)) == unsafe.Pointer(unsafe.SliceData(b))
}

// flushSpans writes every client's span out.
func (r *Relay) flushSpans() {
	for !r.cl.spans.empty() {
		slot := r.cl.spans.lowest()
		r.flushSpan(r.cl.conns[slot])
	}
}

// flushSpan writes c's span to its socket with one write; what the socket
// does not take is copied to c's output buffer, which is empty, and the span
// is within its bound.
func (r *Relay) flushSpan(c *conn) {
	r.cl.spans.remove(c.slot)
	span := c.span
	c.span = nil
	n, err := sysWrite(c.fd, span)
	for err == unix.EINTR {
		n, err = sysWrite(c.fd, span)
	}
	n = max(n, 0)
	switch err {
	case nil, unix.EAGAIN:
	default:
		r.writeFailed(c, err)
		c.dropped += len(span) - n
		return
	}
	if rest := span[n:]; len(rest) > 0 {
		c.out.append(rest) // room was made for the whole span
		r.cl.dirty.add(c.slot)
	} else {
		c.out.shrink()
	}
}

// tap copies an exec session's output into exec.log. Peek does not allocate
// and the lane never blocks, so the tap costs the loop a memcpy.
func (r *Relay) tap(f frame.Frame, s session) {
	p, err := frame.Peek(f.Body)
	if err != nil || !p.HasData {
		return
	}
	switch p.Type {
	case frame.TypeExecStdout:
		src := execlog.Stdout
		if s.tty {
			src = execlog.Output
		}
		r.lane.AppendAt(r.loop.Now(), src, s.logID, p.Data)
	case frame.TypeExecStderr:
		r.lane.AppendAt(r.loop.Now(), execlog.Stderr, s.logID, p.Data)
	}
}

// stallOn pauses the guest stream on c's full buffer and arms its eviction.
func (r *Relay) stallOn(c *conn) {
	now := r.loop.Now()
	if !c.full {
		c.full, c.fullSince = true, now
	}
	if r.stall.slot == c.slot {
		return
	}
	r.stall.slot = c.slot
	r.cl.dirty.add(c.slot)
	r.loop.Schedule(&r.stall.timer, c.fullSince.Add(r.opt.EvictGrace), r.evictStalled)
}

func (r *Relay) evictStalled(now time.Time) {
	r.kick()
	if r.stall.slot < 0 {
		return
	}
	c := r.cl.conns[r.stall.slot]
	r.stats.evictions.Add(1)
	r.log.Warn("evicting slow client", "slot", c.slot, "queued_bytes", c.out.len(),
		"full_for", now.Sub(c.fullSince).Round(time.Millisecond), "grace", r.opt.EvictGrace)
	r.disconnect(c, "evicted: output buffer full past the grace period", nil)
}

// logDrop logs dropped guest frames at debug level each, and at info level
// at most once a second, so a guest flooding empty slots cannot flood logs.
func (r *Relay) logDrop(reason string, f frame.Frame) {
	r.log.Debug("guest frame dropped", "reason", reason, "id", f.ID, "slot", r.form.slotOf(f.ID), "flags", f.Flags)
	if now := r.loop.Now(); now.Sub(r.lastDropLog) >= time.Second {
		r.lastDropLog = now
		r.log.Info("guest frames dropped", "reason", reason, "id", f.ID, "slot", r.form.slotOf(f.ID),
			"no_client_total", r.stats.noClientDrops.Load(), "quarantine_total", r.stats.quarantineDrops.Load())
	}
}
