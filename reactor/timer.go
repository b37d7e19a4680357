package reactor

import (
	"time"
)

// Timer is a deadline the owner embeds in its own state (a connection, a
// session). Scheduling one links it into the loop's heap by index: no
// goroutine, no channel and no allocation per timer, and rescheduling an
// armed timer (the common case for idle and write deadlines) is one sift.
//
// The zero Timer is ready to use. A Timer belongs to one Loop at a time and,
// like the heap it lives in, is touched only on that loop's thread.
type Timer struct {
	when int64  // deadline, nanoseconds since the loop's base time
	seq  uint64 // schedule order: breaks ties so equal deadlines fire FIFO
	f    func(now time.Time)
	idx  int // position in the heap + 1; 0 = not scheduled
}

// Scheduled reports whether t is waiting to fire.
func (t *Timer) Scheduled() bool { return t.idx != 0 }

// timers is a binary min-heap of *Timer ordered by (when, seq). Each Timer
// stores its own position, so Cancel and reschedule are O(log n) without a
// search. The backing array is preallocated and grows only when a timer that
// was not scheduled is added beyond its capacity.
type timers struct {
	h   []*Timer
	seq uint64
}

func (q *timers) init() { q.h = make([]*Timer, 0, 64) }

func less(a, b *Timer) bool {
	return a.when < b.when || a.when == b.when && a.seq < b.seq
}

// schedule arms t for when, or moves it there if it is already armed. A
// moved timer counts as newly scheduled for tie-breaking.
func (q *timers) schedule(t *Timer, when int64, f func(now time.Time)) {
	if f == nil {
		panic("reactor: Schedule with nil func")
	}
	t.when, t.f = when, f
	t.seq = q.seq
	q.seq++
	if t.idx == 0 {
		q.h = append(q.h, t)
		t.idx = len(q.h)
		q.up(t.idx - 1)
		return
	}
	i := t.idx - 1
	if !q.down(i) {
		q.up(i)
	}
}

// cancel disarms t; a timer that is not armed is left alone.
func (q *timers) cancel(t *Timer) {
	if t.idx == 0 {
		return
	}
	q.removeAt(t.idx - 1)
}

func (q *timers) removeAt(i int) {
	t := q.h[i]
	last := len(q.h) - 1
	if i != last {
		q.swap(i, last)
	}
	q.h[last] = nil // drop the reference so an abandoned owner can be collected
	q.h = q.h[:last]
	if i != last && !q.down(i) {
		q.up(i)
	}
	t.idx = 0
}

// next returns the earliest deadline.
func (q *timers) next() (when int64, ok bool) {
	if len(q.h) == 0 {
		return 0, false
	}
	return q.h[0].when, true
}

// fire runs, in deadline order, every timer due at nowNS, passing now. A
// timer that its own or another callback schedules during this pass with a
// deadline already due waits for the next pass: otherwise a callback that
// re-arms itself "now" would keep the loop here forever.
func (q *timers) fire(nowNS int64, now time.Time) (fired int) {
	limit := q.seq
	for len(q.h) > 0 {
		t := q.h[0]
		if t.when > nowNS || t.seq >= limit {
			// The heap order (when, seq) guarantees nothing older and due is
			// hidden behind a newer head.
			break
		}
		q.removeAt(0)
		fired++
		t.f(now)
	}
	return fired
}

func (q *timers) swap(i, j int) {
	q.h[i], q.h[j] = q.h[j], q.h[i]
	q.h[i].idx = i + 1
	q.h[j].idx = j + 1
}

func (q *timers) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !less(q.h[i], q.h[p]) {
			return
		}
		q.swap(i, p)
		i = p
	}
}

// down sifts i towards the leaves and reports whether it moved.
func (q *timers) down(i int) bool {
	start := i
	n := len(q.h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && less(q.h[r], q.h[l]) {
			m = r
		}
		if !less(q.h[m], q.h[i]) {
			break
		}
		q.swap(i, m)
		i = m
	}
	return i > start
}
