package baseline

import (
	"encoding/binary"
	"slices"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/ring"
)

// readChunk is how much room fill makes before each read from the ring. The
// buffer grows past it as needed: like the original's BytesMut, it takes
// everything the ring holds at each wake-up.
const readChunk = 64 << 10

// stream reassembles guest frames from the Tx ring's byte stream. It is the
// port of the original's BytesMut buffer and try_extract_frame, corrupt-frame
// handling included (see next).
type stream struct {
	buf  []byte // buf[head:] is unread
	head int

	// Corruption seen so far, for Stats.
	incidents, skipped uint64
}

// fill moves everything readable in tx into the buffer, as the original pops
// every queued chunk after a wake-up. It reports io.EOF once the guest
// closed the stream and all of it has been read.
func (s *stream) fill(tx *ring.Ring) error {
	s.compact()
	for {
		s.buf = slices.Grow(s.buf, readChunk)
		n, err := tx.TryRead(s.buf[len(s.buf):cap(s.buf)])
		s.buf = s.buf[:len(s.buf)+n]
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// next returns the next whole frame as a fresh allocation (one per frame,
// as the original's per-frame Bytes), or false if there is none for now.
//
// Corrupt framing is handled as 0.4.4 does: a len field above frame.MaxLen
// clears the whole buffer, good frames after it included; a len field below
// frame.MinLen discards that frame, once its bytes are all in, and ends the
// extraction for this wake-up, so frames already buffered behind it wait for
// the guest's next write.
func (s *stream) next() ([]byte, bool) {
	b := s.buf[s.head:]
	if len(b) < frame.LenSize {
		return nil, false
	}
	n := int(binary.BigEndian.Uint32(b))
	if n > frame.MaxLen {
		s.incidents++
		s.skipped += uint64(len(b))
		s.buf, s.head = s.buf[:0], 0
		return nil, false
	}
	if len(b) < frame.LenSize+n {
		return nil, false
	}
	s.head += frame.LenSize + n
	if n < frame.MinLen {
		s.incidents++
		s.skipped += uint64(frame.LenSize + n)
		return nil, false
	}
	f := make([]byte, frame.LenSize+n)
	copy(f, b)
	return f, true
}

// compact moves the unread bytes to the front of the buffer.
func (s *stream) compact() {
	if s.head > 0 {
		n := copy(s.buf, s.buf[s.head:])
		s.buf, s.head = s.buf[:n], 0
	}
}

// buffered is the number of bytes not yet taken by next.
func (s *stream) buffered() int { return len(s.buf) - s.head }
