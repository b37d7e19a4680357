package reactor

import "sync/atomic"

// Stats is a snapshot of a loop's counters. Each counter only grows.
type Stats struct {
	Wakeups     uint64 // epoll_wait returns, timeouts included
	Events      uint64 // events dispatched to a handler
	StaleEvents uint64 // events for a removed token, dropped
	TimersFired uint64
	Submits     uint64 // Submit calls
	Registered  int64  // live registrations (Add minus Remove)
}

// counters are written by the loop once per iteration (totals kept in
// locals while dispatching), so the hot path pays no atomic per event.
// Submits is written by other goroutines and sits on its own cache line so
// that they do not bounce the loop's.
type counters struct {
	wakeups     atomic.Uint64
	events      atomic.Uint64
	stale       atomic.Uint64
	timersFired atomic.Uint64
	registered  atomic.Int64
	_           [64]byte
	submits     atomic.Uint64
}

// Stats returns the loop's counters. Any goroutine may call it.
func (l *Loop) Stats() Stats {
	c := &l.counters
	return Stats{
		Wakeups:     c.wakeups.Load(),
		Events:      c.events.Load(),
		StaleEvents: c.stale.Load(),
		TimersFired: c.timersFired.Load(),
		Submits:     c.submits.Load(),
		Registered:  c.registered.Load(),
	}
}
