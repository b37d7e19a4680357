package baseline

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync/atomic"

	"github.com/agentrelay/agentrelay/frame"
)

// client is the original's ClientState plus the two halves of its
// connection's life: a reader goroutine and a writer goroutine.
type client struct {
	slot uint32
	conn *net.UnixConn

	// out is the writer's bounded channel: one allocated frame per entry.
	// A send to a full out blocks the guest reader, as in the original.
	out chan []byte
	// sessions are the open session ids, guarded by Relay.mu.
	sessions map[uint32]struct{}

	// left is closed when the reader has taken the client out of the
	// table (the original drops its write_tx): the writer flushes what is
	// queued and ends. writerDone is closed when the writer has ended, so
	// a send to out cannot block for ever (the original's send fails once
	// the receiver is gone).
	left, writerDone chan struct{}
	// refs counts the reader and the writer; the last to end closes conn,
	// as the socket closes when both of the original's halves are dropped.
	refs atomic.Int32
}

func newClient(slot uint32, conn *net.UnixConn) *client {
	c := &client{
		slot:       slot,
		conn:       conn,
		out:        make(chan []byte, clientQueue),
		sessions:   make(map[uint32]struct{}),
		left:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	c.refs.Store(2)
	return c
}

// release is called once by the reader and once by the writer.
func (r *Relay) release(c *client) {
	if c.refs.Add(-1) > 0 {
		return
	}
	c.conn.Close()
	r.mu.Lock()
	delete(r.live, c)
	r.mu.Unlock()
}

// clientWriter is the original's per-client writer task: one write per
// frame, in order, until the write fails or the client has left.
func (r *Relay) clientWriter(c *client) {
	defer r.wg.Done()
	defer r.writersDone.Done()
	defer r.release(c)
	defer close(c.writerDone)
	for {
		select {
		case f := <-c.out:
			if !r.write(c, f) {
				return
			}
		case <-c.left:
			r.flush(c)
			return
		case <-r.done:
			r.flush(c)
			return
		}
	}
}

// flush writes what is already queued.
func (r *Relay) flush(c *client) {
	for {
		select {
		case f := <-c.out:
			if !r.write(c, f) {
				return
			}
		default:
			return
		}
	}
}

func (r *Relay) write(c *client, f []byte) bool {
	if _, err := c.conn.Write(f); err != nil {
		r.log.Error("agent relay: client writer failed", "slot", c.slot, "err", err)
		return false
	}
	return true
}

// clientReader is the original's client_reader_task: read a frame, notify
// the owner of a shutdown, register exec sessions for the exec.log tap, track
// session starts and ends, and queue the frame for the guest writer (waiting
// while its channel is full). Any read error or malformed length ends the
// connection; the client's open sessions are then killed.
func (r *Relay) clientReader(c *client) {
	defer r.wg.Done()
	var hdr [frame.LenSize]byte
read:
	for {
		raw, err := readFrame(c.conn, &hdr)
		if err != nil {
			r.log.Info("agent relay: client disconnected", "slot", c.slot, "err", err)
			break
		}
		id := binary.BigEndian.Uint32(raw[frame.LenSize:])
		flags := raw[frame.LenSize+4]
		start := flags&frame.FlagSessionStart != 0
		terminal := flags&frame.FlagTerminal != 0

		if flags&frame.FlagShutdown != 0 {
			r.log.Info("agent relay: client sent core.shutdown, notifying drain", "slot", c.slot)
			r.stats.shutdowns.Add(1)
			select {
			case r.shutdowns <- struct{}{}:
			default:
			}
		}
		if start {
			r.registerExec(id, raw)
		}
		if start || terminal {
			r.mu.Lock()
			if cs := r.clients[c.slot]; cs != nil {
				if start {
					r.stats.sessionsOpened.Add(1)
					if _, ok := cs.sessions[id]; !ok {
						cs.sessions[id] = struct{}{}
						r.stats.sessionsActive.Add(1)
					}
				}
				if terminal {
					r.closeSession(cs, id)
				}
			}
			r.mu.Unlock()
		}
		select {
		case r.toGuest <- raw:
		case <-r.done:
			break read
		}
	}
	r.disconnect(c)
}

// closeSession forgets an open session; the caller holds r.mu.
func (r *Relay) closeSession(c *client, id uint32) {
	if _, ok := c.sessions[id]; ok {
		delete(c.sessions, id)
		r.stats.sessionsActive.Add(^uint64(0))
	}
}

// disconnect takes the client out of the table, queues a SIGKILL for each of
// its open sessions and frees its slot, in the original's order.
func (r *Relay) disconnect(c *client) {
	r.mu.Lock()
	var open map[uint32]struct{}
	if cs := r.clients[c.slot]; cs == c {
		delete(r.clients, c.slot)
		open = c.sessions
		c.sessions = nil
		r.stats.sessionsActive.Add(-uint64(len(open)))
	}
	r.mu.Unlock()
	close(c.left)
	r.stats.clientsActive.Add(^uint64(0))
	r.stats.disconnects.Add(1)

	if len(open) > 0 {
		r.log.Info("agent relay: cleaning up active sessions", "slot", c.slot, "sessions", len(open))
	}
kills:
	for id := range open {
		kill, err := frame.AppendMessage(nil, id, frame.TypeExecSignal, frame.ExecSignal{Signal: 9})
		if err != nil {
			r.log.Error("agent relay: encode SIGKILL", "session", id, "err", err)
			continue
		}
		select {
		case r.toGuest <- kill:
			r.stats.killsSent.Add(1)
		case <-r.done:
			r.log.Error("agent relay: ring writer gone during cleanup", "slot", c.slot)
			break kills
		}
	}
	r.freeSlot(c.slot)
	r.release(c)
}

// readFrame reads one whole frame the way the original's read_raw_frame
// does: the length prefix, then the rest into one allocation, straight from
// the socket (two reads per frame, no buffering).
func readFrame(conn *net.UnixConn, hdr *[frame.LenSize]byte) ([]byte, error) {
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > frame.MaxLen {
		return nil, fmt.Errorf("frame too large: %d bytes (max %d)", n, frame.MaxLen)
	}
	if n < frame.MinLen {
		return nil, fmt.Errorf("frame too short: %d bytes", n)
	}
	raw := make([]byte, frame.LenSize+int(n))
	copy(raw, hdr[:])
	if _, err := io.ReadFull(conn, raw[frame.LenSize:]); err != nil {
		return nil, err
	}
	return raw, nil
}
