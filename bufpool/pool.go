package bufpool

import "math/bits"

// Size classes are powers of two from MinSize to MaxSize; a request is
// rounded up to its class. Larger requests are made and dropped as plain
// slices: nothing on the hot path asks for them.
const (
	MinSize  = 4 << 10
	MaxSize  = 16 << 20
	nClasses = 13 // log2(MaxSize/MinSize) + 1
)

// Pool keeps buffers given back, per size class, up to IdleMax bytes in all;
// beyond that a returned buffer is left to the garbage collector.
type Pool struct {
	free    [nClasses][][]byte
	idleMax int64
	stats   Stats
}

// Stats counts a pool's traffic and holdings.
type Stats struct {
	Gets, Puts    uint64 // buffers lent and given back
	Misses        uint64 // Gets that had to allocate
	Lent, Idle    int64  // bytes lent out now, bytes kept for reuse
	Released      uint64 // buffers given back beyond IdleMax, left to the GC
	ReleasedBytes uint64
}

// New returns a pool that keeps at most idleMax bytes of idle buffers.
func New(idleMax int64) *Pool { return &Pool{idleMax: idleMax} }

// class returns the index of the smallest class holding n bytes, or -1 if n
// exceeds MaxSize.
func class(n int) int {
	if n <= MinSize {
		return 0
	}
	if n > MaxSize {
		return -1
	}
	return bits.Len(uint(n-1)) - bits.Len(uint(MinSize-1))
}

// ClassSize is the capacity Get gives a request of n bytes.
func ClassSize(n int) int {
	c := class(n)
	if c < 0 {
		return n
	}
	return MinSize << c
}

// Get lends a buffer of at least n bytes: its length is its capacity, the
// size class of n. Its contents are whatever the last user left.
func (p *Pool) Get(n int) []byte {
	p.stats.Gets++
	c := class(n)
	if c < 0 {
		p.stats.Misses++
		p.stats.Lent += int64(n)
		return make([]byte, n)
	}
	size := MinSize << c
	p.stats.Lent += int64(size)
	if l := p.free[c]; len(l) > 0 {
		b := l[len(l)-1]
		l[len(l)-1] = nil
		p.free[c] = l[:len(l)-1]
		p.stats.Idle -= int64(size)
		return b
	}
	p.stats.Misses++
	return make([]byte, size)
}

// Put gives back a buffer from Get; the caller must not use it again.
func (p *Pool) Put(b []byte) {
	if b == nil {
		return
	}
	b = b[:cap(b)]
	p.stats.Puts++
	p.stats.Lent -= int64(len(b))
	c := class(len(b))
	if c < 0 || MinSize<<c != len(b) || p.stats.Idle+int64(len(b)) > p.idleMax {
		p.stats.Released++
		p.stats.ReleasedBytes += uint64(len(b))
		return
	}
	p.free[c] = append(p.free[c], b)
	p.stats.Idle += int64(len(b))
}

// Stats returns the pool's counters. Like every method, only from the
// pool's loop.
func (p *Pool) Stats() Stats { return p.stats }

// Trim drops every idle buffer, for the garbage collector to take: after a
// burst (many sandboxes removed), what the pool kept for reuse need not stay
// in the process's memory. It returns the bytes dropped.
func (p *Pool) Trim() int64 {
	n := p.stats.Idle
	for c := range p.free {
		clear(p.free[c])
		p.free[c] = nil
	}
	p.stats.ReleasedBytes += uint64(n)
	p.stats.Idle = 0
	return n
}
