package agent

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// openPTY opens a pseudo-terminal of rows×cols (0 means the protocol's
// default) and returns its master, non-blocking, and the terminal for the
// child.
//
// pty.Open leaves the master in blocking mode (it calls Fd), and a blocking
// *os.File keeps a thread in read(2) that neither Close nor a deadline can
// interrupt: a session whose terminal a background process holds open
// would leak its reader. So the master is re-wrapped as a non-blocking
// descriptor, which os.NewFile hands to the netpoller.
func openPTY(rows, cols uint16) (master, tty *os.File, err error) {
	p, t, err := pty.Open()
	if err != nil {
		return nil, nil, err
	}
	fd, err := unix.FcntlInt(p.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	p.Close()
	if err == nil {
		err = unix.SetNonblock(fd, true)
		if err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		t.Close()
		return nil, nil, fmt.Errorf("pty master: %w", err)
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	if err := setWinsize(master, rows, cols); err != nil {
		master.Close()
		t.Close()
		return nil, nil, err
	}
	return master, t, nil
}

// setWinsize sets the terminal size; the kernel sends SIGWINCH to the
// terminal's foreground process group.
func setWinsize(master *os.File, rows, cols uint16) error {
	if rows == 0 {
		rows = frame.DefaultRows
	}
	if cols == 0 {
		cols = frame.DefaultCols
	}
	rc, err := master.SyscallConn()
	if err != nil {
		return fmt.Errorf("pty resize: %w", err)
	}
	var ioctlErr error
	err = rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if err == nil {
		err = ioctlErr
	}
	if err != nil {
		return fmt.Errorf("pty resize: %w", err)
	}
	return nil
}
