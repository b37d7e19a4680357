package reactor

import (
	"errors"
	"fmt"
)

// Token names one registration: the index of its slot in the loop's handler
// table in the low 32 bits, the slot's generation in the high 32 bits. It is
// what epoll hands back in epoll_event.data, so an event is matched to its
// handler by an array index and one compare, never a map lookup or an fd.
//
// Generations start at 1, so the zero Token never names a registration.
type Token uint64

func makeToken(index, gen uint32) Token { return Token(index) | Token(gen)<<32 }

func (t Token) index() uint32 { return uint32(t) }
func (t Token) gen() uint32   { return uint32(t >> 32) }

// String shows the token as index/generation, for logs.
func (t Token) String() string { return fmt.Sprintf("%d/%d", t.index(), t.gen()) }

// wakeToken marks the loop's own eventfd. Generation 0 is never handed out,
// so it cannot collide with any registration.
const wakeToken = Token(^uint32(0))

// ErrStaleToken is returned by Remove for a token that does not name a live
// registration: never issued, or already removed.
var ErrStaleToken = errors.New("reactor: stale token")

// slot is one entry of the handler table. A free slot has h == nil and sits
// on the free list through next.
type slot struct {
	h    Handler
	fd   int32
	gen  uint32
	next int32 // free list link, -1 at the end
}

// slots is the handler table: grown by alloc (the only place it allocates),
// reused through an intrusive free list, so dispatch is an index and removal
// never allocates.
type slots struct {
	s    []slot
	free int32 // head of the free list, -1 if empty
}

func (t *slots) init() {
	t.s = make([]slot, 0, 64)
	t.free = -1
}

// alloc takes a free slot (or grows the table) for fd and h and returns its
// token. The slot's generation was already bumped when it was last released.
func (t *slots) alloc(fd int, h Handler) Token {
	var i int32
	if t.free >= 0 {
		i = t.free
		t.free = t.s[i].next
	} else {
		i = int32(len(t.s))
		t.s = append(t.s, slot{gen: 1})
	}
	s := &t.s[i]
	s.h, s.fd, s.next = h, int32(fd), -1
	return makeToken(uint32(i), s.gen)
}

// lookup returns the live slot tok names, or nil if the token is stale: its
// slot was released (and maybe reused) after the token was issued.
func (t *slots) lookup(tok Token) *slot {
	i := tok.index()
	if uint64(i) >= uint64(len(t.s)) {
		return nil
	}
	s := &t.s[i]
	if s.gen != tok.gen() || s.h == nil {
		return nil
	}
	return s
}

// release retires a live slot. Bumping the generation is what makes every
// outstanding copy of the old token stale, including one already sitting in
// the current epoll_wait batch.
func (t *slots) release(s *slot, i uint32) {
	s.h = nil
	s.fd = -1
	s.gen++
	if s.gen == 0 { // 0 is reserved; after 2^32 reuses start over at 1
		s.gen = 1
	}
	s.next = t.free
	t.free = int32(i)
}
