package relay

// buffer is a linear byte queue with a hard bound. It starts small and grows
// (doubling) up to max only when a frame does not fit, so steady-state traffic
// never allocates; it is compacted instead of reallocated whenever the unread
// bytes fit at the front.
type buffer struct {
	b    []byte
	r, w int
	max  int
}

func newBuffer(initial, max int) buffer {
	if initial > max {
		initial = max
	}
	return buffer{b: make([]byte, initial), max: max}
}

func (q *buffer) len() int      { return q.w - q.r }
func (q *buffer) bytes() []byte { return q.b[q.r:q.w] }
func (q *buffer) space() []byte { return q.b[q.w:] }
func (q *buffer) commit(n int)  { q.w += n }
func (q *buffer) reset()        { q.r, q.w = 0, 0 }

// truncate keeps the first n unread bytes and drops the rest.
func (q *buffer) truncate(n int) {
	q.w = q.r + n
	if n == 0 {
		q.r, q.w = 0, 0
	}
}

func (q *buffer) consume(n int) {
	q.r += n
	if q.r == q.w {
		q.r, q.w = 0, 0
	}
}

// reserve makes room for n more bytes after w. It reports false, changing
// nothing, if that would take the buffer past its bound.
func (q *buffer) reserve(n int) bool {
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
	size := 2 * len(q.b)
	if size == 0 {
		size = 4096
	}
	for size < used+n {
		size *= 2
	}
	if size > q.max {
		size = q.max
	}
	nb := make([]byte, size)
	copy(nb, q.b[q.r:q.w])
	q.b, q.r, q.w = nb, 0, used
	return true
}

// append copies p in; the caller has reserved room for it.
func (q *buffer) append(p []byte) {
	q.w += copy(q.b[q.w:], p)
}
