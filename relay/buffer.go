package relay

import "github.com/agentrelay/agentrelay/bufpool"

// buffer is a linear byte queue with a hard bound. A client's buffers are
// lent by the loop's pool when bytes come (reserve) and given back when they
// have been gone for a while (idle, from the relay's sweep) or the client
// leaves (release). A buffer starts at its base size and grows, by
// doubling, only when a frame does not fit; growth beyond the base is
// charged to the buffer's budget and refused past it, and a grown buffer
// that empties goes back to its base size, so that budget follows what is
// queued now. Steady traffic neither allocates nor touches the pool: the
// buffer is compacted instead of regrown whenever the unread bytes fit at the
// front.
type buffer struct {
	b      []byte
	r, w   int
	max    int             // bound on the unread bytes
	base   int             // the size lent at acquire
	pool   *bufpool.Pool   // nil: plain allocations, never given back
	budget *bufpool.Budget // charged len(b) - base; nil: unlimited
}

// newBuffer returns a buffer that holds nothing until acquire.
func newBuffer(base, max int, pool *bufpool.Pool, budget *bufpool.Budget) buffer {
	return buffer{max: max, base: min(base, max), pool: pool, budget: budget}
}

// acquire takes the buffer's base-size memory.
func (q *buffer) acquire() {
	q.b = q.get(q.base)
	q.r, q.w = 0, 0
}

// release gives the memory back, whatever it holds.
func (q *buffer) release() {
	q.budget.Give(q.charge())
	q.put(q.b)
	q.b, q.r, q.w = nil, 0, 0
}

func (q *buffer) charge() int64 { return int64(max(len(q.b)-q.base, 0)) }

func (q *buffer) get(n int) []byte {
	if q.pool == nil {
		return make([]byte, n)
	}
	return q.pool.Get(n)
}

func (q *buffer) put(b []byte) {
	if q.pool != nil {
		q.pool.Put(b)
	}
}

func (q *buffer) len() int      { return q.w - q.r }
func (q *buffer) bytes() []byte { return q.b[q.r:q.w] }
func (q *buffer) space() []byte { return q.b[q.w:] }
func (q *buffer) commit(n int)  { q.w += n }

// reset empties the buffer (and shrinks it to its base size).
func (q *buffer) reset() {
	q.r, q.w = 0, 0
	q.shrink()
}

// truncate keeps the first n unread bytes and drops the rest.
func (q *buffer) truncate(n int) {
	q.w = q.r + n
	if n == 0 {
		q.reset()
	}
}

func (q *buffer) consume(n int) {
	q.r += n
	if q.r == q.w {
		q.reset()
	}
}

// shrink puts an empty grown buffer back to its base size.
func (q *buffer) shrink() {
	if q.pool == nil || len(q.b) <= q.base || q.w != q.r {
		return
	}
	q.budget.Give(q.charge())
	q.put(q.b)
	q.b = q.get(q.base)
	q.r, q.w = 0, 0
}

// idle gives a pooled buffer's memory back while it is empty; the next
// reserve takes it again. It keeps a connected but quiet client from
// holding anything.
func (q *buffer) idle() {
	if q.pool != nil && q.b != nil && q.r == q.w {
		q.release()
	}
}

// reserve makes room for n more bytes after w, taking the base-size memory
// first if the buffer holds none. It reports false, changing nothing else,
// if that would take the buffer past its bound or its budget.
func (q *buffer) reserve(n int) bool {
	if q.b == nil && q.pool != nil {
		q.acquire()
	}
	if len(q.b)-q.w >= n {
		return true
	}
	used := q.w - q.r
	if used+n > q.max {
		return false
	}
	if used+n <= len(q.b) {
		copy(q.b, q.b[q.r:q.w])
		q.r, q.w = 0, used
		return true
	}
	return q.grow(used + n)
}

// grow gives the buffer room for n unread bytes, n ≤ max. It reports false,
// changing nothing, if the budget refuses the growth.
func (q *buffer) grow(n int) bool {
	if n <= len(q.b) {
		return true
	}
	size := max(2*len(q.b), 4096)
	for size < n {
		size *= 2
	}
	size = min(size, q.max)
	if q.pool != nil {
		size = bufpool.ClassSize(size)
	}
	if !q.budget.Take(int64(max(size-q.base, 0)) - q.charge()) {
		return false
	}
	nb := q.get(size)
	used := copy(nb, q.b[q.r:q.w])
	q.put(q.b)
	q.b, q.r, q.w = nb, 0, used
	return true
}

// append copies p in; the caller has reserved room for it.
func (q *buffer) append(p []byte) {
	q.w += copy(q.b[q.w:], p)
}
