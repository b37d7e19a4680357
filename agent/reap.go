package agent

import (
	"errors"
	"os"
	"os/signal"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A Reaper collects the exit statuses of the processes the agent starts.
//
// A process's pid must not be signalled once the process has been reaped:
// the pid may belong to a stranger by then. So a Reaper reports the exit in
// two steps: exited runs while the process is still a zombie (its pid
// cannot be reused yet), and only then is it reaped.
type Reaper interface {
	// Start calls start, which starts one process and returns its pid,
	// and watches that process: once it has exited, exited is called,
	// then the process is reaped and wait returns its status. wait is
	// called once. If start fails, Start returns its error and watches
	// nothing.
	Start(start func() (pid int, err error), exited func()) (wait func() unix.WaitStatus, err error)
}

// HostReaper waits for each process by its pid. It is the Reaper of a
// process that reaps only its own commands (the relay's builtin guest):
// children it did not start are someone else's to wait for.
type HostReaper struct{}

// Start implements Reaper; wait blocks in waitid on the pid.
func (HostReaper) Start(start func() (int, error), exited func()) (func() unix.WaitStatus, error) {
	pid, err := start()
	if err != nil {
		return nil, err
	}
	return func() unix.WaitStatus {
		var info unix.Siginfo
		for unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
		}
		exited()
		return reapPid(pid)
	}, nil
}

func reapPid(pid int) unix.WaitStatus {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			return ws
		}
	}
}

// An InitReaper is the Reaper of PID 1, which inherits every orphan and
// must reap them all: one goroutine, woken by SIGCHLD, reaps every zombie,
// hands a tracked pid's status to its waiter and discards the rest. A
// per-pid wait beside it would race it and lose statuses, so in such a
// process every child the agent starts must go through the InitReaper.
type InitReaper struct {
	// mu is held while a process is started and registered, and while
	// zombies are reaped: a child that exits at once is not reaped
	// before it is tracked, and a ptrace stop during the start is not
	// seen by the reaper.
	mu      sync.Mutex
	tracked map[int]*tracked
	sig     chan os.Signal
}

type tracked struct {
	exited func()
	status chan unix.WaitStatus
}

// NewInitReaper starts reaping; it runs for the life of the process.
func NewInitReaper() *InitReaper {
	r := &InitReaper{tracked: make(map[int]*tracked), sig: make(chan os.Signal, 1)}
	signal.Notify(r.sig, unix.SIGCHLD)
	go func() {
		for range r.sig {
			r.reap()
		}
	}()
	// Zombies from before Notify: their SIGCHLD came before anyone
	// listened.
	r.sig <- unix.SIGCHLD
	return r
}

// Start implements Reaper.
func (r *InitReaper) Start(start func() (int, error), exited func()) (func() unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return nil, err
	}
	t := &tracked{exited: exited, status: make(chan unix.WaitStatus, 1)}
	r.tracked[pid] = t
	return func() unix.WaitStatus { return <-t.status }, nil
}

// reap reaps every zombie there is.
func (r *InitReaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		// WNOWAIT first: a tracked process's exited runs while it is
		// still a zombie.
		var info unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		pid := siginfoPid(&info)
		if err != nil || pid == 0 { // ECHILD, or no zombie now
			return
		}
		t := r.tracked[pid]
		if t != nil {
			t.exited()
		}
		ws := reapPid(pid)
		if t != nil {
			delete(r.tracked, pid)
			t.status <- ws
		}
	}
}

// siginfoPid reads si_pid, which x/sys/unix's Siginfo does not expose: on
// Linux it follows si_signo, si_errno, si_code and, on 64-bit, 4 bytes of
// padding that align the union.
func siginfoPid(info *unix.Siginfo) int {
	off := uintptr(12)
	if unsafe.Sizeof(uintptr(0)) == 8 {
		off = 16
	}
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(info), off)))
}

// errStart carries a start failure that is already a core.exec.failed
// payload through Reaper.Start.
var errStart = errors.New("agent: start failed")
