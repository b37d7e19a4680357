package relay

import (
	"encoding/binary"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// session is what the relay knows of one open session: whose it is, whether
// its owner has left (quarantined), and what the exec.log tap needs.
type session struct {
	slot        uint8
	quarantined bool
	exec, tty   bool
	logID       uint64 // relay-wide exec session number for exec.log
	qseq        uint64 // which quarantine this is, to match its expiry entry
}

// qentry is one quarantined session's expiry. All quarantines last the same
// time, so entries expire in the order they were added: a FIFO and one timer
// do instead of a timer per session.
type qentry struct {
	id       uint32
	seq      uint64
	deadline time.Time
}

// openSession records a client's SESSION_START frame. It reports whether the
// frame may be forwarded.
func (r *Relay) openSession(c *conn, f frame.Frame) bool {
	s, ok := r.sessions[f.ID]
	if ok && s.quarantined {
		// The id still names a departed client's session in the guest:
		// forwarding would mix the two sessions' frames. Refuse this start
		// with a terminal failure the client's SDK reports; it retries with
		// another id.
		r.stats.idCollisions.Add(1)
		r.log.Warn("session start refused: id still quarantined", "slot", c.slot, "id", f.ID)
		r.refuseStart(c, f, msgIDQuarantined)
		return false
	}
	if !ok {
		if c.open >= r.opt.MaxSessions {
			r.protocolError(c, errTooManySessions)
			return false
		}
		if c.open+c.quarantined >= r.opt.MaxSessions {
			// The slot's earlier clients left that many sessions the guest
			// has not ended yet. Refusing here, not releasing the oldest,
			// bounds the quarantine at MaxClients × MaxSessions without
			// ever letting a departed client's late output reach this one.
			r.stats.quarantineOverflows.Add(1)
			r.log.Warn("session start refused: slot's quarantine full", "slot", c.slot, "id", f.ID,
				"quarantined", c.quarantined)
			r.refuseStart(c, f, msgQuarantineFull)
			return false
		}
		s = session{slot: uint8(c.slot)}
		c.open++
		r.stats.sessionsActive.Add(1)
	}
	r.stats.sessionsOpened.Add(1)
	if p, err := frame.Peek(f.Body); err == nil && p.Type == frame.TypeExecRequest {
		r.nextLogID++
		s.exec, s.tty, s.logID = true, p.TTY, r.nextLogID
		r.logExecStart(c, f, s)
	}
	r.sessions[f.ID] = s
	return true
}

type relayError string

func (e relayError) Error() string { return string(e) }

const errTooManySessions = relayError("too many open sessions")

// Why a session start was refused, as the client's SDK reports it.
const (
	msgIDQuarantined  = "relay: correlation id is still in use by a departed client's session; retry with another id"
	msgQuarantineFull = "relay: too many sessions of this slot's departed clients are still running in the guest; retry later"
)

// refuseStart answers a refused session start on the guest's behalf.
func (r *Relay) refuseStart(c *conn, f frame.Frame, msg string) {
	var reply []byte
	var err error
	if p, perr := frame.Peek(f.Body); perr == nil && p.Type == frame.TypeFsRequest {
		e := msg
		reply, err = frame.AppendMessage(nil, f.ID, frame.TypeFsResponse, frame.FsResponse{OK: false, Error: &e})
	} else {
		reply, err = frame.AppendMessage(nil, f.ID, frame.TypeExecFailed, frame.ExecFailed{Kind: "other", Message: msg})
	}
	if err != nil || !c.out.reserve(len(reply)) {
		r.protocolError(c, relayError("cannot answer refused session start"))
		return
	}
	c.out.append(reply)
	r.dirty |= 1 << c.slot
}

// quarantinedID reports whether id names a departed client's session.
func (r *Relay) quarantinedID(id uint32) bool {
	s, ok := r.sessions[id]
	return ok && s.quarantined
}

// closeClientSession handles a client's own TERMINAL frame.
func (r *Relay) closeClientSession(c *conn, id uint32) {
	if s, ok := r.sessions[id]; ok && !s.quarantined && int(s.slot) == c.slot {
		r.endSession(id, s)
	}
}

// endSession forgets a session the guest or its client ended.
func (r *Relay) endSession(id uint32, s session) {
	delete(r.sessions, id)
	r.stats.sessionsActive.Add(^uint64(0))
	if s.quarantined {
		r.conns[s.slot].quarantined--
	} else {
		r.conns[s.slot].open--
	}
}

// release SIGKILLs and quarantines every open session of a departing client.
// It returns how many there were.
func (r *Relay) release(c *conn) int {
	if c.open == 0 {
		return 0
	}
	n := 0
	deadline := r.loop.Now().Add(r.opt.QuarantineTimeout)
	for id, s := range r.sessions {
		if int(s.slot) != c.slot || s.quarantined {
			continue
		}
		r.qseq++
		s.quarantined, s.qseq = true, r.qseq
		r.sessions[id] = s
		r.quarantine = append(r.quarantine, qentry{id: id, seq: s.qseq, deadline: deadline})
		r.queueKill(id)
		c.quarantined++
		n++
	}
	c.open = 0
	r.compactQuarantine()
	if !r.qTimer.Scheduled() && len(r.quarantine) > 0 {
		r.loop.Schedule(&r.qTimer, r.quarantine[0].deadline, r.expireQuarantine)
	}
	return n
}

// compactQuarantine drops the expiry entries of sessions that ended before
// expiring. The live entries are bounded (each slot holds at most
// MaxSessions sessions, open or quarantined), but without compaction stale
// ones would accumulate for QuarantineTimeout at the rate clients leave and
// the guest ends their sessions. Compacting only once more than MaxSessions
// entries are stale keeps the queue under (MaxClients + 2) × MaxSessions
// entries and the work amortised to at most MaxClients + 2 entries visited
// per entry added.
func (r *Relay) compactQuarantine() {
	live := 0
	for i := range r.conns {
		live += r.conns[i].quarantined
	}
	if len(r.quarantine) <= live+r.opt.MaxSessions {
		return
	}
	keep := r.quarantine[:0]
	for _, e := range r.quarantine {
		if s, ok := r.sessions[e.id]; ok && s.quarantined && s.qseq == e.seq {
			keep = append(keep, e)
		}
	}
	clear(r.quarantine[len(keep):])
	r.quarantine = keep
}

// queueKill queues core.exec.signal {signal: 9} under id for the guest. The
// frame is a template encoded once; only its id changes.
func (r *Relay) queueKill(id uint32) {
	if !r.ctl.reserve(len(r.killFrame)) {
		r.log.Error("control queue full; SIGKILL not sent", "id", id)
		return
	}
	start := r.ctl.w
	r.ctl.append(r.killFrame)
	binary.BigEndian.PutUint32(r.ctl.b[start+frame.LenSize:], id)
	r.stats.killsSent.Add(1)
	r.stats.framesToGuest.Add(1)
	r.stats.bytesToGuest.Add(uint64(len(r.killFrame)))
}

func (r *Relay) expireQuarantine(now time.Time) {
	i := 0
	for ; i < len(r.quarantine) && !r.quarantine[i].deadline.After(now); i++ {
		e := r.quarantine[i]
		if s, ok := r.sessions[e.id]; ok && s.quarantined && s.qseq == e.seq {
			r.stats.quarantineExpired.Add(1)
			r.log.Warn("quarantine expired: guest never ended the session", "id", e.id, "slot", s.slot)
			r.endSession(e.id, s)
		}
	}
	r.quarantine = append(r.quarantine[:0], r.quarantine[i:]...)
	if len(r.quarantine) > 0 {
		r.loop.Schedule(&r.qTimer, r.quarantine[0].deadline, r.expireQuarantine)
	}
}
