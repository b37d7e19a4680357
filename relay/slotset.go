package relay

import (
	"math/bits"
	"strconv"
)

// slotSet is a set of client slots, one bit each, for up to MaxSlots slots.
// Its width is a constant: the loop's per-pass bookkeeping never allocates.
type slotSet struct{ w [slotWords]uint64 }

const slotWords = (MaxSlots + 63) / 64

func (s *slotSet) add(slot int)      { s.w[slot>>6] |= 1 << (slot & 63) }
func (s *slotSet) remove(slot int)   { s.w[slot>>6] &^= 1 << (slot & 63) }
func (s *slotSet) has(slot int) bool { return s.w[slot>>6]&(1<<(slot&63)) != 0 }

// addAll adds every slot of o.
func (s *slotSet) addAll(o *slotSet) {
	for i := range s.w {
		s.w[i] |= o.w[i]
	}
}

func (s *slotSet) empty() bool {
	for _, w := range s.w {
		if w != 0 {
			return false
		}
	}
	return true
}

func (s *slotSet) count() int {
	n := 0
	for _, w := range s.w {
		n += bits.OnesCount64(w)
	}
	return n
}

// lowest returns the lowest slot in s, or -1 if s is empty.
func (s *slotSet) lowest() int { return s.next(0, MaxSlots) }

// next returns the first slot in s at or after from, wrapping at n (the
// number of slots in use), or -1 if s is empty.
func (s *slotSet) next(from, n int) int {
	if i := s.scan(from, n); i >= 0 {
		return i
	}
	return s.scan(0, from)
}

// scan returns the first slot in s in [from, to), or -1.
func (s *slotSet) scan(from, to int) int {
	for i := from; i < to; {
		w := s.w[i>>6] >> (i & 63)
		if w != 0 {
			j := i + bits.TrailingZeros64(w)
			if j < to {
				return j
			}
			return -1
		}
		i = (i | 63) + 1
	}
	return -1
}

func (s slotSet) String() string {
	b := []byte{'{'}
	for i := s.lowest(); i >= 0; i = s.scan(i+1, MaxSlots) {
		if len(b) > 1 {
			b = append(b, ' ')
		}
		b = strconv.AppendInt(b, int64(i), 10)
	}
	return string(append(b, '}'))
}
