package relay

import (
	"encoding/binary"
	"time"

	"agentrelay/frame"
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
		r.refuseStart(c, f)
		return false
	}
	if !ok {
		if c.open >= r.opt.MaxSessions {
			r.protocolError(c, errTooManySessions)
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
	}
	r.sessions[f.ID] = s
	return true
}

type relayError string

func (e relayError) Error() string { return string(e) }

const errTooManySessions = relayError("too many open sessions")

// refuseStart answers a refused session start on the guest's behalf.
func (r *Relay) refuseStart(c *conn, f frame.Frame) {
	const msg = "relay: correlation id is still in use by a departed client's session; retry with another id"
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
	r.trimQuarantine()
	if !r.qTimer.Scheduled() && len(r.quarantine) > 0 {
		r.loop.Schedule(&r.qTimer, r.quarantine[0].deadline, r.expireQuarantine)
	}
	return n
}

// trimQuarantine keeps the quarantine to MaxClients × MaxSessions entries,
// as many sessions as all clients may have open at once. Without the cap it
// would grow with how fast clients leave with sessions open, for up to
// QuarantineTimeout, and memory would not be bounded. Past the cap the
// oldest quarantined sessions, SIGKILLed first, are released early.
func (r *Relay) trimQuarantine() {
	excess := len(r.quarantine) - frame.MaxClients*r.opt.MaxSessions
	if excess <= 0 {
		return
	}
	released := 0
	for _, e := range r.quarantine[:excess] {
		if s, ok := r.sessions[e.id]; ok && s.quarantined && s.qseq == e.seq {
			r.endSession(e.id, s)
			released++
		}
	}
	r.quarantine = append(r.quarantine[:0], r.quarantine[excess:]...)
	if released > 0 {
		r.stats.quarantineOverflows.Add(uint64(released))
		r.log.Warn("quarantine full: oldest quarantined sessions released early",
			"sessions", released, "max", frame.MaxClients*r.opt.MaxSessions)
	}
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
