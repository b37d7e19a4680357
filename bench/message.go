package bench

import (
	"encoding/binary"
	"fmt"

	"github.com/agentrelay/agentrelay/frame"
)

// ExactFrame returns one whole frame of exactly size bytes, length prefix
// included: a t message (a data-carrying type: core.exec.stdin, stdout,
// stderr or core.fs.data) whose data is padded to make up the size. The
// data is a fixed pattern, not zeros, so that a target that mangled it
// could be told.
func ExactFrame(t frame.Type, id uint32, size int) ([]byte, error) {
	empty, err := frame.AppendMessage(nil, id, t, frame.ExecStdin{})
	if err != nil {
		return nil, err
	}
	if size < len(empty) {
		return nil, fmt.Errorf("bench: a %s frame takes at least %d bytes, not %d", t, len(empty), size)
	}
	// Each CBOR length head grows by at most 8 bytes past the empty case,
	// and there are two of them (the data and the payload).
	base := size - len(empty)
	data := make([]byte, base)
	for i := range data {
		data[i] = byte(i*7 + 1)
	}
	for pad := base; pad >= 0 && pad >= base-16; pad-- {
		// Every data-carrying payload is the same {"data": bytes} map.
		f, err := frame.AppendMessage(make([]byte, 0, size), id, t, frame.ExecStdin{Data: data[:pad]})
		if err != nil {
			return nil, err
		}
		if len(f) == size {
			return f, nil
		}
	}
	return nil, fmt.Errorf("bench: no %s frame is exactly %d bytes", t, size)
}

// SetID rewrites the id of the whole frame f in place.
func SetID(f []byte, id uint32) {
	binary.BigEndian.PutUint32(f[frame.LenSize:], id)
}
