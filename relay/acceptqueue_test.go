package relay

import (
	"testing"
	"time"
)

func TestAcceptQueue(t *testing.T) {
	q := newAcceptQueue(2)
	t0 := time.Unix(100, 0)
	if !q.push(waiter{fd: -1, pid: 1, deadline: t0}) || !q.push(waiter{fd: -1, pid: 2, deadline: t0.Add(time.Second)}) {
		t.Fatal("push into a queue with room failed")
	}
	if q.push(waiter{fd: -1, pid: 3}) {
		t.Fatal("a third waiter fit a queue of 2")
	}
	var expired []int32
	next := q.expire(t0, func(w waiter) { expired = append(expired, w.pid) })
	if len(expired) != 1 || expired[0] != 1 || !next.Equal(t0.Add(time.Second)) || q.len() != 1 {
		t.Fatalf("expired %v, next %v, left %d", expired, next, q.len())
	}
	if w, ok := q.pop(); !ok || w.pid != 2 {
		t.Fatalf("pop = %+v %v, want pid 2", w, ok)
	}
	if _, ok := q.pop(); ok {
		t.Fatal("pop from an empty queue")
	}
	if next := q.expire(t0.Add(time.Hour), func(waiter) { t.Fatal("expired from an empty queue") }); !next.IsZero() {
		t.Fatalf("next deadline of an empty queue: %v", next)
	}
}
