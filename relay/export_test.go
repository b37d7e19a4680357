package relay

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/reactor"
)

// Hooks for the fault tests of package relay_test (which cannot live in
// package relay: they use relaytest, which imports relay).

// SysCalls replaces the relay's socket syscalls (sys.go); a nil field keeps
// the real call.
type SysCalls struct {
	Read    func(fd int, p []byte) (int, error)
	Write   func(fd int, p []byte) (int, error)
	Writev  func(fd int, iovs [][]byte) (int, error)
	Accept4 func(fd, flags int) (int, unix.Sockaddr, error)
}

// SetSysCalls installs s for every relay in the process and returns a func
// that puts the real calls back. Call both only while no relay is running
// (before Run, after Run has returned): the loop reads the variables without
// synchronisation.
func SetSysCalls(s SysCalls) (restore func()) {
	if s.Read != nil {
		sysRead = s.Read
	}
	if s.Write != nil {
		sysWrite = s.Write
	}
	if s.Writev != nil {
		sysWritev = s.Writev
	}
	if s.Accept4 != nil {
		sysAccept4 = s.Accept4
	}
	return func() { sysRead, sysWrite, sysWritev, sysAccept4 = unix.Read, unix.Write, unix.Writev, unix.Accept4 }
}

// ReactorStats returns the counters of the relay's reactor loop.
func ReactorStats(r *Relay) reactor.Stats { return r.loop.Stats() }

// LoopTID returns the id of the OS thread the relay's loop runs on (Run
// locks it); -1 if the loop does not answer within a second.
func LoopTID(r *Relay) int {
	ch := make(chan int, 1)
	r.loop.Submit(func() { ch <- unix.Gettid() })
	select {
	case tid := <-ch:
		return tid
	case <-time.After(time.Second):
		return -1
	}
}

// GuestFD returns the relay's end of the guest's socket (the fd port), or -1.
func GuestFD(r *Relay) int {
	if p, ok := r.port.(*fdPort); ok {
		return p.fd
	}
	return -1
}
