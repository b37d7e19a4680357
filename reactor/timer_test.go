package reactor

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"
)

func TestTimersFireInOrderNeverEarly(t *testing.T) {
	l := newLoop(t)
	offsets := []time.Duration{30, 10, 20, 5, 10, 1, 25}
	type firing struct {
		i       int
		at, now time.Time
		wallNow time.Time
	}
	var fired []firing
	timers := make([]Timer, len(offsets))
	start := time.Now()
	for i, off := range offsets {
		at := start.Add(off * time.Millisecond)
		l.Schedule(&timers[i], at, func(now time.Time) {
			fired = append(fired, firing{i, at, now, time.Now()})
		})
	}
	runUntil(t, l, func() bool { return len(fired) == len(offsets) })

	var order []int
	for k, f := range fired {
		order = append(order, f.i)
		if f.now.Before(f.at) || f.wallNow.Before(f.at) {
			t.Errorf("timer %d (+%v) fired early: now %v, clock %v", f.i, offsets[f.i]*time.Millisecond, f.now.Sub(f.at), f.wallNow.Sub(f.at))
		}
		if k > 0 && f.at.Before(fired[k-1].at) {
			t.Errorf("timer %d fired after the later timer %d", f.i, fired[k-1].i)
		}
		if timers[f.i].Scheduled() {
			t.Errorf("timer %d still scheduled after firing", f.i)
		}
	}
	// Equal deadlines fire in schedule order: timer 1 before timer 4.
	if i1, i4 := slices.Index(order, 1), slices.Index(order, 4); i1 > i4 {
		t.Errorf("order %v: equal deadlines not FIFO", order)
	}
	if s := l.Stats(); s.TimersFired != uint64(len(offsets)) {
		t.Errorf("TimersFired %d, want %d", s.TimersFired, len(offsets))
	}
}

func TestTimerCancel(t *testing.T) {
	l := newLoop(t)
	var a, b Timer
	aFired, bFired := false, false
	now := time.Now()
	l.Schedule(&a, now.Add(5*time.Millisecond), func(time.Time) { aFired = true })
	l.Schedule(&b, now.Add(15*time.Millisecond), func(time.Time) { bFired = true })
	if !a.Scheduled() {
		t.Fatal("scheduled timer reports not scheduled")
	}
	l.Cancel(&a)
	l.Cancel(&a) // cancelling twice is harmless
	if a.Scheduled() {
		t.Fatal("cancelled timer reports scheduled")
	}
	runUntil(t, l, func() bool { return bFired })
	if aFired {
		t.Fatal("cancelled timer fired")
	}
	var never Timer
	l.Cancel(&never) // never scheduled: harmless
}

func TestTimerReschedule(t *testing.T) {
	l := newLoop(t)
	var later, earlier Timer
	var laterAt, earlierAt []time.Time
	start := time.Now()
	l.Schedule(&later, start.Add(5*time.Millisecond), func(now time.Time) { laterAt = append(laterAt, now) })
	l.Schedule(&earlier, start.Add(time.Hour), func(now time.Time) { earlierAt = append(earlierAt, now) })
	l.Schedule(&later, start.Add(40*time.Millisecond), func(now time.Time) { laterAt = append(laterAt, now) })
	l.Schedule(&earlier, start.Add(10*time.Millisecond), func(now time.Time) { earlierAt = append(earlierAt, now) })

	runUntil(t, l, func() bool { return len(laterAt) > 0 })
	if len(earlierAt) != 1 || len(laterAt) != 1 {
		t.Fatalf("fired %d and %d times, want once each", len(earlierAt), len(laterAt))
	}
	if earlierAt[0].Before(start.Add(10*time.Millisecond)) || laterAt[0].Before(start.Add(40*time.Millisecond)) {
		t.Fatalf("rescheduled timers fired early: %v, %v", earlierAt[0].Sub(start), laterAt[0].Sub(start))
	}
}

// TestTimerCallbacks covers callbacks that touch the heap: a timer that
// re-arms itself for "now" must wait for the next iteration instead of
// trapping the loop, and a timer cancelled by an earlier callback in the
// same pass must not fire.
func TestTimerCallbacks(t *testing.T) {
	l := newLoop(t)
	var self, victim Timer
	selfRuns, victimRuns := 0, 0
	var again func(time.Time)
	passRuns := 0 // runs within the current RunOnce
	again = func(now time.Time) {
		selfRuns++
		if passRuns++; passRuns > 1 {
			t.Errorf("self-arming timer ran %d times in one pass", passRuns)
			return // don't re-arm: let the test end
		}
		l.Schedule(&self, now, again)
	}
	at := time.Now()
	l.Schedule(&self, at, again)
	l.Schedule(&victim, at, func(time.Time) { victimRuns++ })
	var killer Timer
	l.Schedule(&killer, at.Add(-time.Second), func(time.Time) { l.Cancel(&victim) })

	time.Sleep(time.Millisecond)
	for i := 1; i <= 3; i++ {
		passRuns = 0
		if err := l.RunOnce(time.Second); err != nil {
			t.Fatal(err)
		}
		if selfRuns != i {
			t.Fatalf("after %d iterations the self-arming timer ran %d times", i, selfRuns)
		}
	}
	if victimRuns != 0 {
		t.Fatal("timer cancelled by an earlier callback in the same pass fired")
	}
}

// TestTimerWaitRoundsUp checks that the loop sleeps until the deadline, not
// a fraction short of it: a timer 1.5ms away needs one wait, not a wait of
// 1ms and a second one (or a spin with timeout 0).
func TestTimerWaitRoundsUp(t *testing.T) {
	l := newLoop(t)
	var tm Timer
	fired := false
	if err := l.RunOnce(0); err != nil { // refresh the loop's clock
		t.Fatal(err)
	}
	l.Schedule(&tm, l.Now().Add(1500*time.Microsecond), func(time.Time) { fired = true })
	if ms := l.timeout(-1); ms != 2 {
		t.Fatalf("timeout for a timer 1.5ms away: %dms, want 2", ms)
	}
	iterations := 0
	for !fired {
		if err := l.RunOnce(-1); err != nil {
			t.Fatal(err)
		}
		iterations++
	}
	// One wait normally; allow one more for an EINTR cut short by a signal.
	if iterations > 2 {
		t.Fatalf("took %d iterations to fire a 1.5ms timer", iterations)
	}
}

func TestTimeout(t *testing.T) {
	l := newLoop(t)
	if ms := l.timeout(-1); ms != -1 {
		t.Errorf("no timers, no limit: %d, want -1", ms)
	}
	if ms := l.timeout(time.Microsecond); ms != 1 {
		t.Errorf("limit 1µs: %d, want 1", ms)
	}
	if ms := l.timeout(0); ms != 0 {
		t.Errorf("limit 0: %d, want 0", ms)
	}
	var tm Timer
	l.Schedule(&tm, l.Now().Add(10*time.Millisecond), func(time.Time) {})
	if ms := l.timeout(time.Hour); ms != 10 {
		t.Errorf("timer 10ms, limit 1h: %d, want 10", ms)
	}
	if ms := l.timeout(3 * time.Millisecond); ms != 3 {
		t.Errorf("timer 10ms, limit 3ms: %d, want 3", ms)
	}
	l.Schedule(&tm, l.Now().Add(-time.Second), func(time.Time) {})
	if ms := l.timeout(-1); ms != 0 {
		t.Errorf("overdue timer: %d, want 0", ms)
	}
	l.Schedule(&tm, l.Now().Add(1000*time.Hour), func(time.Time) {})
	if ms := l.timeout(-1); ms != 1<<31-1 {
		t.Errorf("timer 1000h away: %d, want the int32 cap", ms)
	}
	l.busy = true
	if ms := l.timeout(-1); ms != 0 {
		t.Errorf("busy: %d, want 0", ms)
	}
}

// checkHeap verifies the heap order and every timer's recorded position.
func checkHeap(t *testing.T, q *timers) {
	t.Helper()
	for i, tm := range q.h {
		if tm.idx != i+1 {
			t.Fatalf("timer at %d records index %d", i, tm.idx-1)
		}
		if i > 0 && less(tm, q.h[(i-1)/2]) {
			t.Fatalf("heap order broken at %d", i)
		}
	}
}

// FuzzTimers drives the heap with random schedule, cancel and advance
// operations and compares what fires, and in which order, with a model: a
// plain list of (deadline, schedule order) pairs, sorted when time advances.
func FuzzTimers(f *testing.F) {
	f.Add([]byte{0, 0, 10, 0, 1, 5, 0, 2, 10, 2, 20})
	f.Add([]byte{0, 0, 3, 1, 0, 2, 5, 0, 0, 1, 2, 1})
	f.Add([]byte{0, 1, 9, 0, 1, 4, 0, 2, 4, 0, 3, 4, 2, 4, 0, 7, 7, 2, 200})
	f.Add(binary.BigEndian.AppendUint64(nil, 0x0003_0105_0207_0201))
	f.Fuzz(func(t *testing.T, ops []byte) {
		const n = 8
		var q timers
		q.init()
		var tms [n]Timer
		type entry struct {
			id   int
			when int64
			seq  uint64
		}
		var model []entry // scheduled timers
		var seq uint64
		var now int64
		var got []int
		fns := [n]func(time.Time){}
		for i := range fns {
			fns[i] = func(time.Time) { got = append(got, i) }
		}
		drop := func(id int) {
			model = slices.DeleteFunc(model, func(e entry) bool { return e.id == id })
		}
		for len(ops) >= 2 {
			op, arg := ops[0]%3, ops[1]
			ops = ops[2:]
			switch op {
			case 0: // schedule timer arg%n at now + next byte
				id := int(arg) % n
				var d int64
				if len(ops) > 0 {
					d = int64(ops[0]) - 16 // some deadlines already past
					ops = ops[1:]
				}
				q.schedule(&tms[id], now+d, fns[id])
				drop(id)
				model = append(model, entry{id, now + d, seq})
				seq++
			case 1: // cancel
				id := int(arg) % n
				q.cancel(&tms[id])
				drop(id)
			case 2: // advance time and fire
				now += int64(arg)
				got = got[:0]
				q.fire(now, time.Time{})
				slices.SortFunc(model, func(a, b entry) int {
					if a.when != b.when {
						return int(a.when - b.when)
					}
					return int(a.seq - b.seq)
				})
				var want []int
				for len(model) > 0 && model[0].when <= now {
					want = append(want, model[0].id)
					model = model[1:]
				}
				if !slices.Equal(got, want) {
					t.Fatalf("at %d fired %v, want %v", now, got, want)
				}
			}
			checkHeap(t, &q)
			if len(q.h) != len(model) {
				t.Fatalf("heap holds %d timers, model %d", len(q.h), len(model))
			}
			for id := range tms {
				inModel := slices.ContainsFunc(model, func(e entry) bool { return e.id == id })
				if tms[id].Scheduled() != inModel {
					t.Fatalf("timer %d Scheduled()=%v, model says %v", id, tms[id].Scheduled(), inModel)
				}
			}
		}
	})
}
