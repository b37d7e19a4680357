package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
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

// waiter is a connection accepted while all 16 slots were taken.
type waiter struct {
	fd       int
	uid, pid int32
	deadline time.Time
}

// acceptAll accepts until the backlog is empty (the listener is
// edge-triggered).
func (r *Relay) acceptAll() {
	for r.lfd >= 0 {
		nfd, _, err := sysAccept4(r.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
		case unix.EAGAIN:
			r.acceptPending = false
			return
		case unix.EINTR, unix.ECONNABORTED:
			continue
		default:
			// EMFILE and friends: the connection stays in the backlog and no
			// new edge will come for it, so look again shortly.
			r.acceptPending = false
			r.log.Error("accept failed; retrying in 100ms", "err", err)
			r.loop.Schedule(&r.acceptRetry, r.loop.Now().Add(100*time.Millisecond), func(time.Time) { r.acceptPending = true })
			return
		}
		cred, err := unix.GetsockoptUcred(nfd, unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			r.stats.clientsRefused.Add(1)
			unix.Close(nfd)
			r.log.Warn("connection refused: peer credentials unavailable", "err", err)
			continue
		}
		if !slices.Contains(r.allow, cred.Uid) {
			r.stats.clientsRefused.Add(1)
			unix.Close(nfd)
			r.log.Warn("connection refused: peer uid not allowed", "uid", cred.Uid, "pid", cred.Pid, "allowed", r.allow)
			continue
		}
		if len(r.waiters) == 0 {
			if slot := r.freeSlot(); slot >= 0 {
				r.attach(slot, nfd, cred.Uid, cred.Pid, 0)
				continue
			}
		}
		if len(r.waiters) >= r.opt.AcceptQueue {
			r.stats.acceptOverflows.Add(1)
			unix.Close(nfd)
			r.log.Warn("connection closed: all slots busy and the wait queue is full",
				"queue", len(r.waiters), "uid", cred.Uid, "pid", cred.Pid)
			continue
		}
		w := waiter{fd: nfd, uid: int32(cred.Uid), pid: cred.Pid, deadline: r.loop.Now().Add(r.opt.AcceptWait)}
		r.waiters = append(r.waiters, w)
		r.stats.acceptQueued.Add(1)
		r.log.Info("all client slots busy; connection waits for one", "position", len(r.waiters), "max_wait", r.opt.AcceptWait, "pid", cred.Pid)
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
	for i := range r.conns {
		c := &r.conns[i]
		if c.live {
			continue
		}
		if c.quarantined == 0 {
			return i
		}
		if fallback < 0 {
			fallback = i
		}
	}
	return fallback
}

func (r *Relay) expireWaiters(now time.Time) {
	i := 0
	for ; i < len(r.waiters) && !r.waiters[i].deadline.After(now); i++ {
		w := r.waiters[i]
		r.stats.acceptTimeouts.Add(1) // counted before the client can see the close
		unix.Close(w.fd)
		r.log.Warn("connection closed: no client slot freed in time", "waited", r.opt.AcceptWait, "pid", w.pid)
	}
	r.waiters = append(r.waiters[:0], r.waiters[i:]...)
	if len(r.waiters) > 0 {
		r.loop.Schedule(&r.waitTimer, r.waiters[0].deadline, r.expireWaiters)
	}
}

// serveWaiters gives freed slots to waiting connections, oldest first.
func (r *Relay) serveWaiters() {
	for len(r.waiters) > 0 && r.st == stateServing {
		slot := r.freeSlot()
		if slot < 0 {
			return
		}
		w := r.waiters[0]
		r.waiters = append(r.waiters[:0], r.waiters[1:]...)
		r.attach(slot, w.fd, uint32(w.uid), w.pid, r.opt.AcceptWait-w.deadline.Sub(r.loop.Now()))
	}
	if len(r.waiters) == 0 {
		r.loop.Cancel(&r.waitTimer)
	}
}

// attach gives slot to a new connection and queues the 0.4.4 handshake: the
// slot's id offset, then the cached core.ready frame byte for byte.
func (r *Relay) attach(slot, fd int, uid uint32, pid int32, waited time.Duration) {
	c := &r.conns[slot]
	tok, err := r.loop.Add(fd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLRDHUP, c)
	if err != nil {
		unix.Close(fd)
		r.log.Error("cannot watch client connection", "slot", slot, "err", err)
		return
	}
	c.fd, c.tok, c.live = fd, tok, true
	c.peerUID, c.peerPID, c.since = int32(uid), pid, r.loop.Now()
	c.in.reset()
	c.out.reset()
	c.open, c.full, c.hup = 0, false, false
	c.werr, c.dropped = nil, 0
	offset := uint32(slot) * frame.Step
	c.out.reserve(frame.LenSize + len(r.ready))
	binary.BigEndian.PutUint32(c.out.space(), offset)
	c.out.commit(frame.LenSize)
	c.out.append(r.ready)
	bit := uint16(1) << slot
	r.live |= bit
	r.dirty |= bit
	r.readable |= bit // it may have sent frames before we accepted it
	r.stats.clientsAccepted.Add(1)
	r.stats.clientsActive.Add(1)
	r.log.Info("client connected", "slot", slot, "id_offset", offset, "uid", uid, "pid", pid,
		"waited", waited.Round(time.Millisecond), "quarantined_sessions_in_slot", c.quarantined)
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
	bit := uint16(1) << c.slot
	r.live &^= bit
	r.readable &^= bit
	r.dirty &^= bit
	if r.rxOwner == c.slot && len(r.rxCur) > 0 {
		// Its frame is half in the guest's ring: finish it from a copy.
		r.spill = append(r.spill[:0], r.rxCur...)
		r.rxCur = r.spill
	}
	if r.stalled == c.slot {
		r.stalled = -1
		r.loop.Cancel(&r.stallTimer)
		r.guestWake = true
	}
	if c.full {
		c.full = false
		r.stats.guestStallNanos.Add(uint64(r.loop.Now().Sub(c.fullSince)))
	}
	killed := r.release(c)
	lost := c.out.len() + c.dropped
	c.in.reset()
	c.out.reset()
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
