package relay

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/reactor"
	"github.com/agentrelay/agentrelay/unixsock"
)

// listen creates the clients' socket with the checks and modes that
// unixsock.Listen gives every socket the project serves.
func listen(path string) (int, error) {
	fd, err := unixsock.Listen(path)
	if err != nil {
		return -1, fmt.Errorf("relay: %w", err)
	}
	return fd, nil
}

// listener is the clients' listening socket.
type listener struct {
	fd      int
	tok     reactor.Token
	watched bool          // registered with the loop
	pending bool          // connections may be waiting in the backlog
	retry   reactor.Timer // a look at the backlog after accept4 failed
	allow   []uint32      // peer uids allowed to connect
}

// acceptAll accepts until the backlog is empty (the listener is
// edge-triggered).
func (r *Relay) acceptAll() {
	for r.ln.fd >= 0 {
		nfd, _, err := sysAccept4(r.ln.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
		case unix.EAGAIN:
			r.ln.pending = false
			return
		case unix.EINTR, unix.ECONNABORTED:
			continue
		default:
			// EMFILE and friends: the connection stays in the backlog and no
			// new edge will come for it, so look again shortly.
			r.ln.pending = false
			r.log.Error("accept failed; retrying in 100ms", "err", err)
			r.loop.Schedule(&r.ln.retry, r.loop.Now().Add(100*time.Millisecond), func(time.Time) {
				r.ln.pending = true
				r.kick()
			})
			return
		}
		cred, err := unix.GetsockoptUcred(nfd, unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			r.stats.clientsRefused.Add(1)
			unix.Close(nfd)
			r.log.Warn("connection refused: peer credentials unavailable", "err", err)
			continue
		}
		if !slices.Contains(r.ln.allow, cred.Uid) {
			r.stats.clientsRefused.Add(1)
			unix.Close(nfd)
			r.log.Warn("connection refused: peer uid not allowed", "uid", cred.Uid, "pid", cred.Pid, "allowed", r.ln.allow)
			continue
		}
		if r.waiting.len() == 0 {
			if slot := r.freeSlot(); slot >= 0 {
				r.attach(slot, nfd, cred.Uid, cred.Pid, 0)
				continue
			}
		}
		w := waiter{fd: nfd, uid: int32(cred.Uid), pid: cred.Pid, deadline: r.loop.Now().Add(r.opt.AcceptWait)}
		if !r.waiting.push(w) {
			r.stats.acceptOverflows.Add(1)
			unix.Close(nfd)
			r.log.Warn("connection closed: all slots busy and the wait queue is full",
				"queue", r.waiting.len(), "uid", cred.Uid, "pid", cred.Pid)
			continue
		}
		r.stats.acceptQueued.Add(1)
		r.log.Info("all client slots busy; connection waits for one", "position", r.waiting.len(), "max_wait", r.opt.AcceptWait, "pid", cred.Pid)
		if !r.waitTimer.Scheduled() {
			r.loop.Schedule(&r.waitTimer, w.deadline, r.expireWaiters)
		}
	}
}

// freeSlot returns the lowest free slot, preferring slots with no
// quarantined sessions so that a new client's ids do not collide with a
// departed client's; -1 if all are taken.
func (r *Relay) freeSlot() int {
	fallback := -1
	for i := range r.form.slots {
		c := r.cl.conns[i]
		if c.live || c.queued > 0 {
			continue
		}
		if r.sess.quarantined[i] == 0 {
			return i
		}
		if fallback < 0 {
			fallback = i
		}
	}
	return fallback
}

func (r *Relay) expireWaiters(now time.Time) {
	r.kick()
	next := r.waiting.expire(now, func(w waiter) {
		r.stats.acceptTimeouts.Add(1) // counted before the client can see the close
		unix.Close(w.fd)
		r.log.Warn("connection closed: no client slot freed in time", "waited", r.opt.AcceptWait, "pid", w.pid)
	})
	if !next.IsZero() {
		r.loop.Schedule(&r.waitTimer, next, r.expireWaiters)
	}
}

// serveWaiters gives freed slots to waiting connections, oldest first.
func (r *Relay) serveWaiters() {
	for r.waiting.len() > 0 && r.st == stateServing {
		slot := r.freeSlot()
		if slot < 0 {
			return
		}
		w, _ := r.waiting.pop()
		r.attach(slot, w.fd, uint32(w.uid), w.pid, r.opt.AcceptWait-w.deadline.Sub(r.loop.Now()))
	}
	if r.waiting.len() == 0 {
		r.loop.Cancel(&r.waitTimer)
	}
}

// attach gives slot to a new connection and queues the handshake: the
// form's prefix (0.4: the id offset; 0.5: the id range), then the cached
// core.ready frame byte for byte.
func (r *Relay) attach(slot, fd int, uid uint32, pid int32, waited time.Duration) {
	c := r.cl.conns[slot]
	if c == &vacant {
		c = &conn{r: r, slot: slot, fd: -1,
			in:  newBuffer(initialBuffer, frame.MaxFrame, r.pool, r.inBudget),
			out: newBuffer(initialBuffer, r.opt.ClientBuffer, r.pool, r.outBudget)}
		r.cl.conns[slot] = c
	}
	tok, err := r.loop.Add(fd, clientEvents, c)
	if err != nil {
		unix.Close(fd)
		r.log.Error("cannot watch client connection", "slot", slot, "err", err)
		return
	}
	c.fd, c.tok, c.live = fd, tok, true
	c.peerUID, c.peerPID, c.since = int32(uid), pid, r.loop.Now()
	c.full, c.hup, c.outArmed = false, false, false
	c.werr, c.dropped = nil, 0
	var hs [frame.HandshakeSize05]byte
	g := r.form.appendGreeting(hs[:0], slot)
	c.out.reserve(len(g) + len(r.ready))
	c.out.append(g)
	c.out.append(r.ready)
	lo, hi := r.form.idRange(slot)
	r.cl.live.add(slot)
	r.cl.dirty.add(slot)
	r.cl.readable.add(slot) // it may have sent frames before we accepted it
	r.stats.clientsAccepted.Add(1)
	r.stats.clientsActive.Add(1)
	r.log.Info("client connected", "slot", slot, "ids", [2]uint32{lo, hi}, "uid", uid, "pid", pid,
		"waited", waited.Round(time.Millisecond), "quarantined_sessions_in_slot", r.sess.quarantined[slot])
}

// disconnect closes a client: its open sessions get SIGKILL and are
// quarantined, its slot is freed and handed to a waiting connection.
func (r *Relay) disconnect(c *conn, reason string, err error) {
	if !c.live {
		return
	}
	r.stats.disconnects.Add(1) // counted before the client can see the close
	r.stats.clientsActive.Add(^uint64(0))
	r.loop.Remove(c.tok)
	unix.Close(c.fd)
	c.live, c.fd = false, -1
	r.cl.live.remove(c.slot)
	r.cl.readable.remove(c.slot)
	r.cl.starved.remove(c.slot)
	r.cl.dirty.remove(c.slot)
	if len(c.span) > 0 {
		c.dropped += len(c.span)
		c.span = nil
		r.cl.spans.remove(c.slot)
	}
	if r.stall.slot == c.slot {
		r.stall.slot = -1
		r.loop.Cancel(&r.stall.timer)
		r.guestWake = true
	}
	if c.full {
		c.full = false
		r.stats.guestStallNanos.Add(uint64(r.loop.Now().Sub(c.fullSince)))
	}
	killed := r.release(c)
	if r.form.notify {
		r.notifyDisconnected(c.slot)
	}
	lost := c.out.len() + c.dropped
	// Its queued frames stay where they are until the guest has them; the
	// slot is not reused before (freeSlot).
	c.in.truncate(c.queued)
	if c.queued == 0 {
		c.in.release()
	}
	c.out.release()
	attrs := []any{"slot", c.slot, "reason", reason, "sessions_killed", killed,
		"connected_for", r.loop.Now().Sub(c.since).Round(time.Millisecond), "uid", c.peerUID, "pid", c.peerPID}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	if lost > 0 {
		attrs = append(attrs, "unsent_bytes", lost)
	}
	if err != nil && !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
		r.log.Warn("client disconnected", attrs...)
	} else {
		r.log.Info("client disconnected", attrs...)
	}
	// The slot goes to a waiting connection in the idle pass, not here: the
	// caller may still be working on c (forwardFrames after a protocol
	// error) and must not find it live again with another client in it.
	r.waitersDue = true
}
