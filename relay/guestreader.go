package relay

import (
	"encoding/binary"

	"github.com/agentrelay/agentrelay/frame"
)

// guestReader takes whole frames off the guest's byte stream: a port's
// guestSource. On a linear source (the fd port's buffer, which can hold any
// whole frame) every frame is a view of the source, and when a frame is
// incomplete the reader just says how many bytes it wants (wanted).
//
// On a ring (the ring port's Tx) a frame that lies
// contiguously in the ring is returned as a view of the ring itself (no
// copy). Anything else — a frame that wraps the ring's end, one that has not
// fully arrived, even a header split across two writes — is assembled in a
// staging buffer allocated once; consuming as it copies frees ring space for
// the guest and lets a frame larger than the ring through. It also means the
// ring is empty whenever next reports "need more", so the caller can arm the
// data wake-up without spinning on a partial frame.
//
// The caller calls done once it has routed the frame; until then next returns
// the same frame again, which is how the guest stream pauses on a full client.
//
// On a length the protocol forbids (under 5 or over 4 MiB) the reader
// resynchronises: it skips bytes until a plausible header with a CBOR
// envelope follows, counting what it skipped. Memory never grows with the
// corruption: the staging buffer is the only buffer.
type guestReader struct {
	ring   guestSource
	linear bool
	lin    *fdPort // the linear source itself: no interface call per frame
	stage  []byte  // frame.MaxFrame bytes, made by the first frame that wraps the ring; never on a linear source
	want   int     // linear: bytes the frame at the head needs to be whole

	// The stream's head is in stage when staged > 0 or need > 0. need is the
	// size of the frame being assembled, 0 while its header is incomplete.
	staged, need int

	cur      frame.Frame
	have     bool
	fromRing int // bytes to consume on done when cur is a ring view

	resyncing bool
	skipped   uint64 // bytes skipped in the current incident

	// onCorrupt is called once when an incident starts, onResync once when
	// it ends; both on the loop thread.
	onCorrupt func(badLen uint32)
	onResync  func(skipped uint64)
}

func newGuestReader(src guestSource, linear bool) *guestReader {
	g := &guestReader{ring: src, linear: linear}
	if p, ok := src.(*fdPort); ok && linear {
		g.lin = p
	}
	return g
}

// wanted is, after next reported that more bytes are needed from a linear
// source, how many bytes the source must hold for the next step.
func (g *guestReader) wanted() int { return g.want }

// plausible reports whether a frame header followed by the start of a CBOR
// envelope (a map whose first key is a short text string) begins at p, which
// holds resyncWindow bytes.
func plausible(p []byte) bool {
	n := binary.BigEndian.Uint32(p)
	if n < frame.MinLen+2 || n > frame.MaxLen || p[8]&^0x07 != 0 {
		return false
	}
	m := p[frame.HeaderSize]
	if !(m >= 0xa1 && m <= 0xb7) && m != 0xbf {
		return false
	}
	k := p[frame.HeaderSize+1]
	return k >= 0x61 && k <= 0x77
}

const resyncWindow = frame.HeaderSize + 2

func (g *guestReader) window() int {
	if g.resyncing {
		return resyncWindow
	}
	return frame.LenSize
}

// check looks at a candidate header p (g.window() bytes). It returns the frame
// size, or 0 after starting or continuing a resync, in which case the caller
// drops one byte and tries again.
func (g *guestReader) check(p []byte) int {
	if g.resyncing {
		if !plausible(p) {
			g.skipped++
			return 0
		}
		g.resyncing = false
		if g.onResync != nil {
			g.onResync(g.skipped)
		}
		g.skipped = 0
	}
	n, err := frame.Len(p)
	if err != nil {
		g.resyncing = true
		g.skipped = 1
		if g.onCorrupt != nil {
			g.onCorrupt(binary.BigEndian.Uint32(p))
		}
		return 0
	}
	return n
}

// fill moves bytes from the ring into stage until it holds upto bytes or
// the ring is empty.
func (g *guestReader) fill(upto int, budget *int) {
	if g.stage == nil {
		g.stage = make([]byte, frame.MaxFrame)
	}
	for g.staged < upto {
		a, _ := g.ring.Peek()
		if len(a) == 0 {
			return
		}
		k := copy(g.stage[g.staged:upto], a)
		g.ring.Consume(k)
		g.staged += k
		*budget -= k
	}
}

// next returns the next complete frame, or false when more bytes are needed
// or the budget (bytes copied or skipped) is spent, so that one call never
// does unbounded work.
func (g *guestReader) next(budget *int) (frame.Frame, bool) {
	if g.have {
		return g.cur, true
	}
	if g.linear {
		return g.nextLinear(budget)
	}
	var hdr [resyncWindow]byte
	for *budget > 0 {
		if g.staged > 0 || g.need > 0 {
			if g.need == 0 {
				w := g.window()
				g.fill(w, budget)
				if g.staged < w {
					return frame.Frame{}, false
				}
				n := g.check(g.stage[:w])
				if n == 0 {
					copy(g.stage, g.stage[1:g.staged])
					g.staged--
					*budget--
					continue
				}
				g.need = n
			}
			g.fill(g.need, budget)
			if g.staged < g.need {
				if g.ring.Len() == 0 {
					return frame.Frame{}, false
				}
				continue // budget spent mid-frame
			}
			f, _ := frame.Split(g.stage[:g.need])
			g.cur, g.have, g.fromRing = f, true, 0
			return f, true
		}

		a, b := g.ring.Peek()
		w := g.window()
		if len(a)+len(b) < w {
			if len(a) > 0 {
				g.fill(len(a)+len(b), budget) // a few header bytes: stage them
				continue
			}
			return frame.Frame{}, false
		}
		p := a
		if len(a) < w {
			k := copy(hdr[:], a)
			copy(hdr[k:w], b)
			p = hdr[:w]
		}
		n := g.check(p)
		if n == 0 {
			g.ring.Consume(1)
			*budget--
			continue
		}
		if len(a) >= n {
			f, _ := frame.Split(a[:n])
			g.cur, g.have, g.fromRing = f, true, n
			return f, true
		}
		g.need, g.staged = n, 0
	}
	return frame.Frame{}, false
}

// nextLinear is next on a source that can hold a whole frame: no staging.
func (g *guestReader) nextLinear(budget *int) (frame.Frame, bool) {
	for *budget > 0 {
		a := g.lin.in[g.lin.head:g.lin.tail]
		w := g.window()
		if len(a) < w {
			g.want = w
			return frame.Frame{}, false
		}
		n := g.check(a[:w])
		if n == 0 {
			g.lin.head++
			*budget--
			continue
		}
		if len(a) < n {
			g.want = n
			return frame.Frame{}, false
		}
		// check validated the length: the frame is a[:n].
		raw := a[:n:n]
		g.cur = frame.Frame{ID: binary.BigEndian.Uint32(raw[frame.LenSize:]), Flags: raw[frame.LenSize+4], Body: raw[frame.HeaderSize:], Raw: raw}
		g.have, g.fromRing = true, n
		return g.cur, true
	}
	g.want = 0
	return frame.Frame{}, false
}

// done releases the frame last returned by next.
func (g *guestReader) done() {
	if g.lin != nil {
		g.lin.head += g.fromRing
	} else if g.fromRing > 0 {
		g.ring.Consume(g.fromRing)
	}
	g.have, g.fromRing, g.need, g.staged = false, 0, 0, 0
}

// partial reports whether part of a frame has been read but not returned.
func (g *guestReader) partial() bool {
	if g.linear {
		return !g.have && g.ring.Len() > 0
	}
	return !g.have && (g.staged > 0 || g.need > 0)
}
