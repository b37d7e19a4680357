package relay

import (
	"fmt"

	"github.com/agentrelay/agentrelay/frame"
)

// Handshake chooses the form of the handshake the relay gives clients
// (../shared/PROTOCOL-GENERATIONS.md): the relay speaks first, so the form is
// its choice.
type Handshake uint8

const (
	// HandshakeAuto takes the form from the guest's core.ready envelope:
	// v = 1 gives the 0.4 form, v ≥ 2 the 0.5 form.
	HandshakeAuto Handshake = iota
	// Handshake04 is microsandbox 0.4's: [offset u32 BE] + core.ready, 16
	// slots.
	Handshake04
	// Handshake05 is microsandbox 0.5's and later's: [id_start u32 BE]
	// [id_end_exclusive u32 BE] + core.ready, 128 slots. A 0.5.0 guest
	// sends v = 1 with it, so it has to be forced there.
	Handshake05
)

// MaxSlots is the most client slots any form has: the 0.5 form's.
const MaxSlots = frame.MaxClients05

// ParseHandshake reads "auto", "0.4" or "0.5".
func ParseHandshake(s string) (Handshake, error) {
	switch s {
	case "auto", "":
		return HandshakeAuto, nil
	case "0.4":
		return Handshake04, nil
	case "0.5":
		return Handshake05, nil
	}
	return 0, fmt.Errorf("handshake %q: want auto, 0.4 or 0.5", s)
}

func (h Handshake) String() string {
	switch h {
	case HandshakeAuto:
		return "auto"
	case Handshake04:
		return "0.4"
	case Handshake05:
		return "0.5"
	}
	return fmt.Sprintf("Handshake(%d)", uint8(h))
}

// form is the handshake the relay speaks, fixed once core.ready is in: the
// slots, their id ranges, the greeting and whether the guest hears of
// departed clients.
type form struct {
	hs    Handshake // Handshake04 or Handshake05
	slots int
	step  uint32
	// notify: send core.relay.client.disconnected when a client leaves.
	// Only a guest that knows the type gets it: v ≥ 2, or the 0.5 form
	// forced (a 0.5.0 guest sends v = 1 and knows it).
	notify bool
	v      uint64 // the guest's envelope generation, for frames the relay makes
}

// chooseForm settles the form from the option and the guest's generation.
func chooseForm(h Handshake, v uint64) form {
	if h == HandshakeAuto {
		h = Handshake04
		if v >= 2 {
			h = Handshake05
		}
	}
	f := form{hs: h, slots: frame.MaxClients, step: frame.Step, v: max(v, 1)}
	if h == Handshake05 {
		f.slots = MaxSlots
		f.step = frame.Step05
		f.notify = true
	}
	return f
}

// idRange is slot's ids, [lo, hi). In both forms the slot's boundary
// k·step itself is nobody's: 0.4 clients allocate from offset+1.
func (f form) idRange(slot int) (lo, hi uint32) {
	base := uint32(slot) * f.step
	return base + 1, base + f.step
}

// valid reports whether a client in slot may send a frame under id:
// anything in its range, and id 0 only for core.shutdown.
func (f form) valid(slot int, id uint32, flags uint8) bool {
	if id == 0 {
		return flags&frame.FlagShutdown != 0
	}
	lo, hi := f.idRange(slot)
	return id >= lo && id < hi
}

// slotOf is the routing rule for guest frames, the same in both forms:
// id / step, ids past the last slot's range going to the last slot.
func (f form) slotOf(id uint32) int {
	return min(int(id/f.step), f.slots-1)
}

// appendGreeting appends slot's handshake prefix, what comes before the
// cached core.ready: the 0.4 offset or the 0.5 id range.
func (f form) appendGreeting(dst []byte, slot int) []byte {
	if f.hs == Handshake05 {
		return frame.AppendHandshake05(dst, slot)
	}
	return frame.AppendHandshake04(dst, slot)
}

// disconnectedFrame appends core.relay.client.disconnected for slot (id 0,
// no flags), as upstream's relay sends it after a departed client's
// SIGKILLs.
func (f form) disconnectedFrame(dst []byte, slot int) ([]byte, error) {
	lo, hi := f.idRange(slot)
	return frame.AppendMessageVersion(dst, 0, f.v, frame.TypeRelayClientDisconnected,
		frame.RelayClientDisconnected{IDStart: lo, IDEndExclusive: hi})
}

// initAckFrame is core.init.ack {} (id 0), the answer to a guest's
// core.init.resolved while it waits to send core.ready.
func initAckFrame(v uint64) ([]byte, error) {
	return frame.AppendMessageVersion(nil, 0, max(v, 1), frame.TypeInitAck, frame.InitAck{})
}
