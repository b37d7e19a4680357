package relay

import (
	"math/bits"

	"github.com/agentrelay/agentrelay/frame"
)

// slotSet is a set of client slots, one bit each.
type slotSet uint16

func (s *slotSet) add(slot int)     { *s |= 1 << slot }
func (s *slotSet) remove(slot int)  { *s &^= 1 << slot }
func (s slotSet) has(slot int) bool { return s&(1<<slot) != 0 }
func (s slotSet) empty() bool       { return s == 0 }
func (s slotSet) lowest() int       { return bits.TrailingZeros16(uint16(s)) }
func (s slotSet) count() int        { return bits.OnesCount16(uint16(s)) }
func (s slotSet) String() string    { return slotSetString(s) }
func slotSetString(s slotSet) string {
	b := make([]byte, 0, 48)
	b = append(b, '{')
	for t := s; !t.empty(); {
		i := t.lowest()
		t.remove(i)
		if len(b) > 1 {
			b = append(b, ' ')
		}
		if i >= 10 {
			b = append(b, byte('0'+i/10))
		}
		b = append(b, byte('0'+i%10))
	}
	return string(append(b, '}'))
}

// next returns the first slot in s at or after from, wrapping; s must not be
// empty.
func (s slotSet) next(from int) int {
	rot := bits.RotateLeft16(uint16(s), -from)
	return (from + bits.TrailingZeros16(rot)) & (frame.MaxClients - 1)
}
