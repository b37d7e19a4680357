package baseline

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// guestReader is the original's ring_reader_task: sleep on the Tx ring's
// wake, take everything the ring holds, extract every whole frame, then route
// them one by one. A frame for a client whose channel is full waits for room,
// and with it every frame for every other client (head-of-line blocking).
// The end of the guest stream ends Run with relay.ErrGuestClosed.
func (r *Relay) guestReader() {
	defer r.wg.Done()
	var s stream
	var frames [][]byte
	r.wakeMu.Lock()
	stop := r.stopWake.Fd()
	r.wakeMu.Unlock()
	fds := []unix.PollFd{
		{Fd: int32(r.tx.DataFd()), Events: unix.POLLIN},
		{Fd: int32(stop), Events: unix.POLLIN},
	}
	for {
		r.tx.DrainData()
		err := s.fill(r.tx)
		for {
			f, ok := s.next()
			if !ok {
				break
			}
			frames = append(frames, f)
		}
		r.stats.corruptIncidents.Store(s.incidents)
		r.stats.corruptBytes.Store(s.skipped)
		for i, f := range frames {
			frames[i] = nil
			if !r.route(f) {
				return
			}
		}
		frames = frames[:0]
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.log.Error("agent relay: guest stream failed", "err", err)
			}
			r.log.Info("agent relay: guest stream ended", "unframed_bytes", s.buffered())
			r.guestEnded.Store(true)
			r.Stop()
			return
		}
		if !r.tx.ArmData() {
			continue
		}
		select {
		case <-r.done:
			return
		default:
		}
		for {
			_, err := unix.Poll(fds, -1)
			if err == nil {
				break
			}
			if err != unix.EINTR {
				r.log.Error("agent relay: poll failed", "err", err)
				r.Stop()
				return
			}
		}
		if fds[1].Revents != 0 {
			return // Stop
		}
	}
}

// route delivers one guest frame to the client owning its id range, after
// the exec.log tap. It returns false if the relay stopped meanwhile.
func (r *Relay) route(f []byte) bool {
	id := binary.BigEndian.Uint32(f[frame.LenSize:])
	flags := f[frame.LenSize+4]
	slot := min(id/frame.Step, frame.MaxClients-1)

	if r.opt.ExecLog != nil {
		r.tap(f, flags)
	}

	r.mu.Lock()
	c := r.clients[slot]
	if c != nil && flags&frame.FlagTerminal != 0 {
		r.closeSession(c, id)
	}
	r.mu.Unlock()
	if c == nil {
		r.stats.noClientDrops.Add(1)
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("agent relay: no client for slot (frame dropped)", "slot", slot, "id", id)
		}
		return true
	}

	select {
	case c.out <- f:
		r.delivered(f)
		return true
	default:
	}
	// The channel is full: wait, holding up the whole guest stream.
	start := time.Now()
	defer func() { r.stats.guestStallNanos.Add(uint64(time.Since(start))) }()
	select {
	case c.out <- f:
		r.delivered(f)
	case <-c.writerDone:
		r.log.Error("agent relay: write channel closed", "slot", slot)
	case <-r.done:
		return false
	}
	return true
}

func (r *Relay) delivered(f []byte) {
	r.stats.framesToClient.Add(1)
	r.stats.bytesToClient.Add(uint64(len(f)))
}

// guestWriter is the original's ring_writer_task: it pushes client frames
// (and SIGKILLs) into the Rx ring one at a time.
func (r *Relay) guestWriter() {
	defer r.wg.Done()
	for {
		select {
		case f := <-r.toGuest:
			r.push(f)
		case <-r.done:
			return
		}
	}
}

// push puts one whole frame into the Rx ring, trying pushTries times
// pushPause apart while the ring is full and then dropping the frame, as the
// original does (its queue push is all or nothing, so is this one).
//
// The original's ring is a queue of 2048 chunks of any size, ours a byte
// ring: a frame larger than the whole ring could never be pushed at once, so
// it is let in once the ring is empty and then written as the guest drains
// it, never dropped half-way.
func (r *Relay) push(f []byte) {
	big := len(f) > r.rx.Cap()
	var start time.Time
	for attempt := range pushTries {
		free := r.rx.Free()
		if free >= len(f) || (big && free == r.rx.Cap()) {
			if !start.IsZero() {
				r.stats.ringFullNanos.Add(uint64(time.Since(start)))
			}
			if big {
				r.pushBig(f)
				return
			}
			if r.rx.Write(f) == len(f) {
				r.stats.framesToGuest.Add(1)
				r.stats.bytesToGuest.Add(uint64(len(f)))
			} else {
				r.dropped(f) // the guest closed its end
			}
			return
		}
		if attempt == 0 {
			start = time.Now()
		}
		if attempt == pushTries-1 {
			r.stats.ringFullNanos.Add(uint64(time.Since(start)))
			r.log.Error("agent relay: rx ring full after retries, dropping frame", "bytes", len(f))
			r.dropped(f)
			return
		}
		select {
		case <-time.After(pushPause):
		case <-r.done:
			return
		}
	}
}

// pushBig writes a frame larger than the Rx ring as the guest makes room.
func (r *Relay) pushBig(f []byte) {
	for done := 0; done < len(f); {
		if n := r.rx.Write(f[done:]); n > 0 {
			done += n
			continue
		}
		if r.rx.ReadClosed() || r.rx.Closed() {
			r.dropped(f)
			return
		}
		select {
		case <-time.After(pushPause):
		case <-r.done:
			return
		}
	}
	r.stats.framesToGuest.Add(1)
	r.stats.bytesToGuest.Add(uint64(len(f)))
}

func (r *Relay) dropped(f []byte) {
	r.stats.droppedToGuest.Add(1)
	r.stats.droppedBytesToGuest.Add(uint64(len(f)))
}
