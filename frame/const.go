package frame

import "math"

// Framing limits, from PROTOCOL.md. Later generations keep them.
const (
	LenSize    = 4       // the u32 big-endian length prefix
	HeaderSize = 9       // len + id + flags
	MinLen     = 5       // smallest valid value of the len field: id + flags
	MaxLen     = 4 << 20 // largest valid value of the len field (4,194,304)
	MaxFrame   = LenSize + MaxLen
)

// Header flags. They sit outside the CBOR body so that a relay can track
// sessions by reading the 9-byte header alone.
const (
	FlagTerminal     uint8 = 0x01 // last frame of a session
	FlagSessionStart uint8 = 0x02 // first frame of a session
	FlagShutdown     uint8 = 0x04 // the guest is asked to power off
)

// Protocol generations: the envelope's "v". Generation 1 is 0.4.4 (and
// 0.5.0, which changed only the handshake); each later one added message
// types (Type.Since): 2 in 0.5.1, 3 in 0.5.3, 4 in 0.5.5, 5 in 0.5.6,
// 6 in 0.6.4, 7 in 0.6.10. Peers negotiate the smaller of their two
// generations; a decoder accepts any "v".
const (
	// Version is the generation AppendMessage writes: 0.4.4's, which every
	// client understands.
	Version = 1
	// MaxGeneration is the newest generation whose message types this
	// package knows.
	MaxGeneration = 7
)

// Correlation-id partitioning of the 0.4.4 handshake: client slot k owns the
// ids [k*Step+1, k*Step+Step), and the relay greets it with [k*Step u32 BE].
const (
	MaxClients        = 16
	Step       uint32 = math.MaxUint32 / MaxClients // 268,435,455
)

// The 0.5 handshake (microsandbox 0.5.0 and later): 128 slots, and the
// relay greets slot k with [id_start u32 BE][id_end_exclusive u32 BE],
// the range SlotRange05 gives, before the cached core.ready frame.
const (
	MaxClients05        = 128
	Step05       uint32 = math.MaxUint32 / MaxClients05 // 33,554,431

	HandshakeSize04 = 4 // [offset]
	HandshakeSize05 = 8 // [id_start][id_end_exclusive]
)
