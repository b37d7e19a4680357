// Package reactor runs an epoll event loop on one locked OS thread and
// dispatches readiness events, timers and handed-over work to handlers on
// that thread. It is the mechanism under the relay: it decides nothing about
// what to read or write, only who is told when.
//
// # Threads
//
// Run locks its goroutine to an OS thread and is the only code that touches
// the loop's state: the epoll set, the handler table, the timer heap. So
// Add, Remove, Schedule, Cancel, SetIdle and Now may be called only from
// that thread (from a Handler, a timer func, the idle func or a submitted
// func), or before Run starts and after it returns. Other goroutines reach
// the loop through exactly three calls: Submit, which queues a func to run on
// the loop thread; Stop; and Stats. Submit is the way to register an fd or
// arm a timer from elsewhere.
//
// Submit and Stop wake a sleeping loop through an eventfd, and only a
// sleeping one: the loop raises a flag before it blocks in epoll_wait, and a
// submitter writes the eventfd only if it clears that flag, so handing work
// to a busy loop costs an atomic push and no syscall.
//
// # Edge-triggered registration
//
// Every fd added with Add is registered with EPOLLET. A level-triggered
// registration reports an fd on every epoll_wait for as long as it stays
// readable or writable, so a consumer that must stop reading one client
// (its destination is full) or that has nothing to write would have to
// EPOLL_CTL_MOD its interest away and back again: two syscalls per
// pause, and the relay pauses often, under back-pressure and for every
// toggle of interest in EPOLLOUT. Edge-triggered registration is set up once
// and never modified; epoll reports transitions, and the owner keeps the
// state.
//
// The contract this imposes on a Handler: an event means "became ready", and
// no further event comes for that direction until the fd has returned
// EAGAIN. So a handler must either read (or write) until EAGAIN, or remember
// that the fd is still ready and come back to it without waiting for epoll:
// the relay keeps its own ready lists and works through them from the idle
// func, which returns busy=true while any list is non-empty so the next
// epoll_wait does not block. An fd that is left ready and forgotten is never
// reported again. Register EPOLLOUT together with EPOLLIN from the start
// instead of toggling it: epoll then reports the moment room appears in a
// full socket buffer, and a handler with nothing to write just notes that
// the fd is writable.
//
// # Tokens and stale events
//
// How a closed fd is removed so that a reused fd number can never receive a
// stale event: epoll_event.data does not carry the fd or a pointer but a
// Token, the index of the registration's slot in a handler table and the
// slot's generation. Remove does EPOLL_CTL_DEL, clears the slot and bumps its
// generation before the fd is closed. epoll_wait may already have returned an
// event for that registration in the batch being dispatched (an earlier
// handler in the batch removed it), or the fd number may already be back,
// opened and added again, reusing the very slot; either way the event still
// carries the old generation, no longer matches the slot, is counted in
// StaleEvents and is dropped. The new registration's handler only ever sees
// events that carry its own token.
//
// # Timers
//
// A Timer is a struct its owner embeds. Schedule links it into a binary
// min-heap that records each timer's position in the timer itself, so arming,
// moving and cancelling are O(log n) and allocate nothing, and no goroutine
// or runtime timer exists per deadline. The loop sleeps in epoll_wait until
// the earliest deadline, rounded up to the next millisecond, and fires due
// timers after dispatching events, in deadline order (FIFO for equal
// deadlines), never before their deadline by the loop's clock.
//
// # Iteration
//
// One iteration is: epoll_wait (timeout 0 if the last idle call was busy or
// work is queued, else until the earliest timer or forever); read the clock
// once (Now); dispatch the events; run submitted funcs; fire due timers; call
// the idle func. The epoll event array and the handler table are
// preallocated, so an iteration allocates nothing of its own.
package reactor
