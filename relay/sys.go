package relay

import "golang.org/x/sys/unix"

// The syscalls the relay makes on client and listening sockets go through
// these variables so that tests can inject faults the kernel produces only
// rarely or under load: EINTR, short reads and writes, EAGAIN after partial
// progress, EPIPE and ECONNRESET at chosen moments (see export_test.go and
// sysfault_test.go). Production code never reassigns them.
//
// The indirect call through a package variable costs about a nanosecond
// (a load and an indirect branch the predictor always gets right) against
// the microseconds of the syscall behind it, and none of these calls is
// inlinable anyway. The relay package has no benchmark of its own; the
// bench/ workloads measure the whole relay, where the difference is far
// below run-to-run noise.
var (
	sysRead    = unix.Read
	sysWrite   = unix.Write
	sysAccept4 = unix.Accept4
)

// sysWritev writes to the guest's socket (the fd port).
var sysWritev = unix.Writev
