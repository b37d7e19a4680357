package serve

import (
	"os"
	"runtime"
)

// reserveProcs adds a P for each of the relay's threads that spend their
// idle time in a blocking system call while holding a P, unless the user set
// GOMAXPROCS. With an in-process guest (echo, builtin) or a goroutine pump
// there are two: the reactor in epoll_wait and the guest in ppoll. With the
// default GOMAXPROCS = cores, on a 2-core host both Ps then sit in system
// calls whenever the relay is idle between frames; the runtime's sysmon sees
// no idle P, retakes the blocked ones every 20 µs and wakes a spinning
// thread to run them, which finds nothing to do. On the round-trip benchmark
// that cost ~1.3 extra system calls (nanosleep, futex) and a context switch
// per frame. The extra Ps run nothing on their own: goroutines that do work
// are still bounded by what is runnable.
//
// A socket guest served by the fd port leaves only the reactor blocking,
// so an idle P remains and nothing spins: there blocked is 0, because extra
// Ps there only add idle threads polling the runtime's netpoller (measured:
// see bench/RESULTS.md).
func reserveProcs(blocked int) {
	if os.Getenv("GOMAXPROCS") != "" || blocked == 0 {
		return
	}
	runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + blocked)
}
