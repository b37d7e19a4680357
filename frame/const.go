package frame

import "math"

// Framing limits, from PROTOCOL.md.
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

// Version is the protocol version written into every envelope's "v".
const Version = 1

// Correlation-id partitioning of the 0.4.4 handshake: client slot k owns the
// ids [k*Step+1, k*Step+Step).
const (
	MaxClients        = 16
	Step       uint32 = math.MaxUint32 / MaxClients // 268,435,455
)
