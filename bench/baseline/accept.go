package baseline

import (
	"encoding/binary"
	"errors"
	"net"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// acceptLoop is the original's accept loop: take the lowest free slot, write
// the handshake directly, start the client's writer and reader. A client
// beyond the 16th is closed without a word.
func (r *Relay) acceptLoop() {
	defer r.wg.Done()
	defer close(r.acceptEnded)
	for {
		conn, err := r.ln.AcceptUnix()
		if err != nil {
			select {
			case <-r.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Error("agent relay: accept error", "err", err)
			// The original retries at once; a pause keeps a persistent
			// error (EMFILE) from spinning a core.
			select {
			case <-r.done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		select {
		case <-r.done:
			conn.Close()
			return
		default:
		}
		slot, ok := r.takeSlot()
		if !ok {
			r.log.Error("agent relay: max clients reached, rejecting connection")
			r.stats.acceptOverflows.Add(1)
			conn.Close()
			continue
		}
		offset := slot * frame.Step
		r.log.Info("agent relay: client connected", "slot", slot, "id_offset", offset)

		// The original registers the client after writing the handshake,
		// so guest frames for the slot in between are dropped; a client
		// that hears from the guest before it has sent anything (the
		// conformance suite's do) would miss them. Registering first
		// queues them for the writer, which starts after the handshake.
		c := newClient(slot, conn)
		r.mu.Lock()
		r.clients[slot] = c
		r.live[c] = struct{}{}
		r.mu.Unlock()

		hs := make([]byte, 0, 4+len(r.ready))
		hs = binary.BigEndian.AppendUint32(hs, offset)
		hs = append(hs, r.ready...)
		if _, err := conn.Write(hs); err != nil {
			r.log.Error("agent relay: handshake write failed", "slot", slot, "err", err)
			r.mu.Lock()
			delete(r.clients, slot)
			delete(r.live, c)
			r.mu.Unlock()
			close(c.writerDone) // a guest frame waiting for c.out gives up
			r.freeSlot(slot)
			conn.Close()
			continue
		}
		r.stats.clientsAccepted.Add(1)
		r.stats.clientsActive.Add(1)
		r.wg.Add(2)
		r.writersDone.Add(1)
		go r.clientWriter(c)
		go r.clientReader(c)
	}
}

// takeSlot marks the lowest free slot used.
func (r *Relay) takeSlot() (uint32, bool) {
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	for i := range r.used {
		if !r.used[i] {
			r.used[i] = true
			return uint32(i), true
		}
	}
	return 0, false
}

func (r *Relay) freeSlot(slot uint32) {
	r.slotsMu.Lock()
	r.used[slot] = false
	r.slotsMu.Unlock()
}
