package relay

import (
	"encoding/binary"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// openSession records a client's SESSION_START frame. It reports whether the
// frame may be forwarded; a refused start is answered, or is a protocol
// error.
func (r *Relay) openSession(c *conn, f frame.Frame) bool {
	p, perr := frame.Peek(f.Body)
	exec := perr == nil && p.Type == frame.TypeExecRequest
	switch r.sess.start(c.slot, f.ID, exec, exec && p.TTY) {
	case startQuarantined:
		// The id still names a departed client's session in the guest:
		// forwarding would mix the two sessions' frames. Refuse this start
		// with a terminal failure the client's SDK reports; it retries with
		// another id.
		r.stats.idCollisions.Add(1)
		r.log.Warn("session start refused: id still quarantined", "slot", c.slot, "id", f.ID)
		r.refuseStart(c, f, msgIDQuarantined)
		return false
	case startTooMany:
		r.protocolError(c, errTooManySessions)
		return false
	case startSlotFull:
		r.stats.quarantineOverflows.Add(1)
		r.log.Warn("session start refused: slot's quarantine full", "slot", c.slot, "id", f.ID,
			"quarantined", r.sess.quarantined[c.slot])
		r.refuseStart(c, f, msgQuarantineFull)
		return false
	case startRelayFull:
		r.stats.sessionsRefused.Add(1)
		r.log.Warn("session start refused: the relay's session table is full", "slot", c.slot, "id", f.ID,
			"sessions", r.sess.len())
		r.refuseStart(c, f, msgRelayFull)
		return false
	}
	r.stats.sessionsOpened.Add(1)
	r.stats.sessionsActive.Store(uint64(r.sess.len()))
	if exec {
		s, _ := r.sess.get(f.ID)
		r.logExecStart(c, f, s)
	}
	return true
}

type relayError string

func (e relayError) Error() string { return string(e) }

const errTooManySessions = relayError("too many open sessions")

// Why a session start was refused, as the client's SDK reports it.
const (
	msgIDQuarantined  = "relay: correlation id is still in use by a departed client's session; retry with another id"
	msgQuarantineFull = "relay: too many sessions of this slot's departed clients are still running in the guest; retry later"
	msgRelayFull      = "relay: too many sessions are open in this sandbox; retry later"
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
	if err != nil {
		r.protocolError(c, relayError("cannot answer refused session start"))
		return
	}
	if !c.out.reserve(len(reply)) {
		// It keeps starting sessions and reads none of the answers: a
		// client that does not read, as one that holds up the guest.
		r.stats.evictions.Add(1)
		r.disconnect(c, "evicted: output full, a refused session start cannot be answered", nil)
		return
	}
	c.out.append(reply)
	r.cl.dirty.add(c.slot)
}

// endSession forgets a session the guest ended.
func (r *Relay) endSession(id uint32) {
	r.sess.end(id)
	r.stats.sessionsActive.Store(uint64(r.sess.len()))
}

// release SIGKILLs and quarantines every open session of a departing client.
// It returns how many there were.
func (r *Relay) release(c *conn) int {
	n := r.sess.quarantine(c.slot, r.loop.Now().Add(r.opt.QuarantineTimeout), r.queueKill)
	if n > 0 && !r.qTimer.Scheduled() {
		r.loop.Schedule(&r.qTimer, r.sess.fifo[0].deadline, r.expireQuarantine)
	}
	return n
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
	r.q.add(ctlSource)
	r.stats.killsSent.Add(1)
	r.pend.framesToGuest++
	r.pend.bytesToGuest += uint64(len(r.killFrame))
}

// notifyDisconnected queues core.relay.client.disconnected for slot's
// departed client, after its SIGKILLs.
func (r *Relay) notifyDisconnected(slot int) {
	var tmp [96]byte
	f, err := r.form.disconnectedFrame(tmp[:0], slot)
	if err != nil || !r.ctl.reserve(len(f)) {
		r.log.Error("disconnect notice not sent", "slot", slot, "err", err)
		return
	}
	r.ctl.append(f)
	r.q.add(ctlSource)
	r.pend.framesToGuest++
	r.pend.bytesToGuest += uint64(len(f))
}

func (r *Relay) expireQuarantine(now time.Time) {
	r.kick()
	next := r.sess.expire(now, func(id uint32, s session) {
		r.stats.quarantineExpired.Add(1)
		r.log.Warn("quarantine expired: guest never ended the session", "id", id, "slot", s.slot)
	})
	r.stats.sessionsActive.Store(uint64(r.sess.len()))
	if !next.IsZero() {
		r.loop.Schedule(&r.qTimer, next, r.expireQuarantine)
	}
}
