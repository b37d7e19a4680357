package bench

import (
	"encoding/binary"
	"fmt"

	"github.com/agentrelay/agentrelay/frame"
)

// Counter counts the whole frames in a byte stream fed in chunks of any
// size, checking each frame's header against what the client sent: the
// size (if Size is set) and the id (Want, which advances by one per frame
// unless FixedID). It reads the 9-byte headers only and never copies a
// body, so a reader spends on it next to nothing per frame.
type Counter struct {
	Size    int    // every frame must be this long; 0: any valid length
	Want    IDs    // the id expected next
	FixedID bool   // every frame carries Want's current id (one session)
	Frames  uint64 // whole frames counted so far

	Skipped uint64 // frames under id 0 passed over (see Feed)

	head [frame.HeaderSize]byte
	nh   int  // header bytes gathered so far
	rest int  // body bytes of the current frame still to come
	skip bool // the current frame is passed over, not counted
}

// Feed counts the frames that p completes. It returns how many, or an error
// at the first frame that is not what was sent: then the stream is lost.
// Frames under id 0 are no client's and are passed over: in the 0.5
// handshake the relay tells the guest of every departed client, and an echo
// guest sends that notice back under id 0, which routes to slot 0.
func (c *Counter) Feed(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		if c.rest > 0 {
			k := min(c.rest, len(p))
			c.rest -= k
			p = p[k:]
			if c.rest == 0 && !c.skip {
				done++
			}
			continue
		}
		var h []byte
		if c.nh == 0 && len(p) >= frame.HeaderSize {
			h, p = p[:frame.HeaderSize], p[frame.HeaderSize:]
		} else {
			k := copy(c.head[c.nh:], p)
			c.nh += k
			p = p[k:]
			if c.nh < frame.HeaderSize {
				break
			}
			h, c.nh = c.head[:], 0
		}
		if c.skip = binary.BigEndian.Uint32(h[frame.LenSize:]) == 0; c.skip {
			n, err := frame.Len(h)
			if err != nil {
				c.Frames += uint64(done)
				return done, fmt.Errorf("frame %d: %w", c.Frames+uint64(done), err)
			}
			c.Skipped++
			c.rest = n - frame.HeaderSize
			continue
		}
		n, err := c.header(h, c.Frames+uint64(done))
		if err != nil {
			c.Frames += uint64(done)
			return done, err
		}
		c.rest = n - frame.HeaderSize
		if c.rest == 0 {
			done++
		}
	}
	c.Frames += uint64(done)
	return done, nil
}

func (c *Counter) header(h []byte, index uint64) (int, error) {
	n, err := frame.Len(h)
	if err != nil {
		return 0, fmt.Errorf("frame %d: %w", index, err)
	}
	if c.Size != 0 && n != c.Size {
		return 0, fmt.Errorf("frame %d: %d bytes, sent %d", index, n, c.Size)
	}
	id := binary.BigEndian.Uint32(h[frame.LenSize:])
	want := c.Want.next
	if !c.FixedID {
		want = c.Want.Next()
	}
	if id != want {
		return 0, fmt.Errorf("frame %d: id %d, want %d (lost or reordered)", index, id, want)
	}
	return n, nil
}
