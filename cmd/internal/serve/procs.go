package serve

import (
	"os"
	"runtime"
)

// blockedThreads is how many of the relay's threads spend their idle time in
// a blocking system call while holding a P: the reactor in epoll_wait and an
// in-process guest (echo, builtin, or a transport pump) in ppoll.
const blockedThreads = 2

// reserveProcs adds a P for each of those threads, unless the user set
// GOMAXPROCS. With the default GOMAXPROCS = cores, on a 2-core host both Ps
// sit in system calls whenever the relay is idle between frames; the
// runtime's sysmon then sees no idle P, retakes the blocked ones every 20 µs
// and wakes a spinning thread to run them, which finds nothing to do. On
// the round-trip benchmark that costs ~1.3 extra system calls (nanosleep,
// futex) and a context switch per frame and keeps sysmon from backing off.
// The extra Ps run nothing on their own: goroutines that do work are still
// bounded by what is runnable.
func reserveProcs() {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + blockedThreads)
}
