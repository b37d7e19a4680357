package frame

import (
	"encoding/binary"
	"fmt"
)

// SlotRange05 returns the ids slot k owns in the 0.5 form, [start, end):
// k*Step05+1 up to k*Step05+Step05. Id 0 belongs to no slot. It panics if
// k is not a slot, as indexing would.
func SlotRange05(k int) (start, end uint32) {
	if k < 0 || k >= MaxClients05 {
		panic(fmt.Sprintf("frame: slot %d out of range [0, %d)", k, MaxClients05))
	}
	base := uint32(k) * Step05
	return base + 1, base + Step05
}

// AppendHandshake04 appends the 0.4 greeting of slot k: [k*Step u32 BE].
func AppendHandshake04(dst []byte, k int) []byte {
	if k < 0 || k >= MaxClients {
		panic(fmt.Sprintf("frame: slot %d out of range [0, %d)", k, MaxClients))
	}
	return binary.BigEndian.AppendUint32(dst, uint32(k)*Step)
}

// AppendHandshake05 appends the 0.5 greeting of slot k:
// [id_start u32 BE][id_end_exclusive u32 BE].
func AppendHandshake05(dst []byte, k int) []byte {
	start, end := SlotRange05(k)
	return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(dst, start), end)
}

// ParseHandshake05 reads a 0.5 greeting and checks that it is a range a
// relay can hand out: non-empty, not containing id 0.
func ParseHandshake05(b []byte) (start, end uint32, err error) {
	if len(b) < HandshakeSize05 {
		return 0, 0, fmt.Errorf("frame: handshake of %d bytes, want %d", len(b), HandshakeSize05)
	}
	start, end = binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])
	if start == 0 || end <= start {
		return 0, 0, fmt.Errorf("frame: handshake range [%d, %d) is empty or holds id 0", start, end)
	}
	return start, end, nil
}
