package relay

import (
	"time"

	"github.com/agentrelay/agentrelay/execlog"
	"github.com/agentrelay/agentrelay/frame"
)

// Guest → client. Frames are routed by id range straight from the Tx ring
// into the owning client's output buffer. A client whose buffer is full holds
// up the one ordered guest stream, for at most Options.EvictGrace in all
// until it has drained below half; then it is evicted and everyone else
// carries on.

func (r *Relay) pumpFromGuest() {
	r.guestWake = false
	budget := fromGuestBudget
	for {
		// A stalled frame is retried here: route reports false again, at
		// no cost, until its client has written enough out.
		f, ok := r.g.next(&budget)
		if !ok {
			if budget <= 0 {
				r.guestWake = true // more to do: stay busy
				return
			}
			// The closed flag is read before the length: once closed, the
			// producer writes nothing more, so an empty ring is the end.
			if r.tx.Closed() && r.tx.Len() == 0 {
				r.guestEnd()
			}
			return
		}
		if !r.route(f) {
			return
		}
		budget -= len(f.Raw)
		r.g.done()
		if budget <= 0 {
			r.guestWake = true
			return
		}
	}
}

func (r *Relay) guestEnd() {
	if r.guestEnded {
		return
	}
	r.guestEnded = true
	if r.g.partial() {
		r.log.Warn("guest stream ended mid-frame; partial frame discarded")
	}
	r.drain(ErrGuestClosed, "guest stream ended; closing clients")
}

// route delivers one guest frame, or drops it with a count when no client
// may have it. It reports false when the owning client's buffer is full; the
// frame is then retried after that client has written some out.
func (r *Relay) route(f frame.Frame) bool {
	s, isSession := r.sessions[f.ID]
	terminal := f.Flags&frame.FlagTerminal != 0
	if isSession && s.quarantined {
		r.stats.quarantineDrops.Add(1)
		r.logDrop("quarantined session", f)
		if terminal {
			if s.exec {
				r.logExecEnd(f, s)
			}
			r.endSession(f.ID, s)
		}
		return true
	}
	slot := slotOf(f.ID)
	c := &r.conns[slot]
	if !c.live {
		r.stats.noClientDrops.Add(1)
		r.logDrop("no client in slot", f)
		return true
	}
	if !c.out.reserve(len(f.Raw)) {
		r.stallOn(c)
		return false
	}
	if r.stalled >= 0 {
		r.stalled = -1
		r.loop.Cancel(&r.stallTimer)
	}
	c.out.append(f.Raw)
	r.dirty |= 1 << slot
	r.stats.framesToClient.Add(1)
	r.stats.bytesToClient.Add(uint64(len(f.Raw)))
	if isSession {
		if s.exec && r.lane != nil {
			r.tap(f, s)
		}
		if terminal {
			if s.exec {
				r.logExecEnd(f, s)
			}
			r.endSession(f.ID, s)
		}
	}
	return true
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
	if r.stalled == c.slot {
		return
	}
	r.stalled = c.slot
	r.dirty |= 1 << c.slot
	r.loop.Schedule(&r.stallTimer, c.fullSince.Add(r.opt.EvictGrace), r.evictStalled)
}

func (r *Relay) evictStalled(now time.Time) {
	if r.stalled < 0 {
		return
	}
	c := &r.conns[r.stalled]
	r.stats.evictions.Add(1)
	r.log.Warn("evicting slow client", "slot", c.slot, "queued_bytes", c.out.len(),
		"full_for", now.Sub(c.fullSince).Round(time.Millisecond), "grace", r.opt.EvictGrace)
	r.disconnect(c, "evicted: output buffer full past the grace period", nil)
	r.guestWake = true
}

// logDrop logs dropped guest frames at debug level each, and at info level
// at most once a second, so a guest flooding empty slots cannot flood logs.
func (r *Relay) logDrop(reason string, f frame.Frame) {
	r.log.Debug("guest frame dropped", "reason", reason, "id", f.ID, "slot", slotOf(f.ID), "flags", f.Flags)
	if now := r.loop.Now(); now.Sub(r.lastDropLog) >= time.Second {
		r.lastDropLog = now
		r.log.Info("guest frames dropped", "reason", reason, "id", f.ID, "slot", slotOf(f.ID),
			"no_client_total", r.stats.noClientDrops.Load(), "quarantine_total", r.stats.quarantineDrops.Load())
	}
}
