package relay

import (
	"time"

	"golang.org/x/sys/unix"
)

// waiter is a connection accepted while every slot was taken.
type waiter struct {
	fd       int
	uid, pid int32
	deadline time.Time
}

// acceptQueue holds the connections waiting for a slot, oldest first, up to a
// bound. All of them wait equally long, so they also expire oldest first.
type acceptQueue struct {
	w   []waiter
	max int
}

func newAcceptQueue(max int) acceptQueue { return acceptQueue{max: max} }

func (q *acceptQueue) len() int { return len(q.w) }

// push queues w; false if the queue is full (the caller closes w).
func (q *acceptQueue) push(w waiter) bool {
	if len(q.w) >= q.max {
		return false
	}
	q.w = append(q.w, w)
	return true
}

// pop takes the oldest waiter.
func (q *acceptQueue) pop() (waiter, bool) {
	if len(q.w) == 0 {
		return waiter{}, false
	}
	w := q.w[0]
	q.w = append(q.w[:0], q.w[1:]...)
	return w, true
}

// expire removes the waiters due by now, calling expired for each (which
// closes it), and returns the next deadline (zero if none is left).
func (q *acceptQueue) expire(now time.Time, expired func(waiter)) time.Time {
	i := 0
	for ; i < len(q.w) && !q.w[i].deadline.After(now); i++ {
		expired(q.w[i])
	}
	q.w = append(q.w[:0], q.w[i:]...)
	if len(q.w) == 0 {
		return time.Time{}
	}
	return q.w[0].deadline
}

// closeAll closes every waiting connection.
func (q *acceptQueue) closeAll() {
	for _, w := range q.w {
		unix.Close(w.fd)
	}
	q.w = q.w[:0]
}
