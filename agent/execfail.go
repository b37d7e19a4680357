package agent

import (
	"errors"
	"io/fs"
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// Stages reported in core.exec.failed: where starting the command failed.
const (
	stageArgs   = "args"
	stageUser   = "user"
	stageCwd    = "chdir"
	stagePty    = "openpty"
	stagePipe   = "pipe"
	stageExec   = "execvp"
	stageRlimit = "setrlimit"
)

// execFailure builds a core.exec.failed payload from an errno, picking the
// kind the way agentd does.
func execFailure(errno syscall.Errno, stage, message string) *frame.ExecFailed {
	kind := frame.FailOther
	switch errno {
	case unix.ENOENT, unix.ENOTDIR, unix.ELOOP:
		kind = frame.FailNotFound
	case unix.EACCES, unix.EPERM:
		kind = frame.FailPermissionDenied
	case unix.ENOEXEC:
		kind = frame.FailNotExecutable
	case unix.E2BIG, unix.EINVAL, unix.ENAMETOOLONG:
		kind = frame.FailBadArgs
	case unix.ENOMEM:
		kind = frame.FailOutOfMemory
	case unix.EAGAIN, unix.EMFILE, unix.ENFILE:
		kind = frame.FailResourceLimit
	}
	f := withErrno(&frame.ExecFailed{Kind: kind, Message: message}, errno)
	f.Stage = &stage
	return f
}

// failure builds a payload of a fixed kind, with the errno if err has one.
func failure(kind, stage, message string, err error) *frame.ExecFailed {
	f := &frame.ExecFailed{Kind: kind, Message: message}
	if stage != "" {
		f.Stage = &stage
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		withErrno(f, errno)
	}
	return f
}

func badArgs(message string) *frame.ExecFailed {
	return failure(frame.FailBadArgs, stageArgs, message, nil)
}

func withErrno(f *frame.ExecFailed, errno syscall.Errno) *frame.ExecFailed {
	e := int32(errno)
	f.Errno = &e
	if name := unix.ErrnoName(errno); name != "" {
		f.ErrnoName = &name
	}
	return f
}

// startFailure classifies an error from starting the process: os/exec and
// the fork/exec path report the child's errno inside a *fs.PathError.
func startFailure(cmd string, err error) *frame.ExecFailed {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		if errors.Is(err, exec.ErrNotFound) {
			errno = unix.ENOENT
		} else {
			return failure(frame.FailOther, stageExec, err.Error(), err)
		}
	}
	var msg string
	switch errno {
	case unix.ENOENT:
		msg = "command not found: " + cmd
	case unix.EACCES:
		msg = "permission denied: " + cmd
	case unix.ENOEXEC:
		msg = "not an executable: " + cmd
	default:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = cmd + ": " + pe.Err.Error()
		} else {
			msg = cmd + ": " + err.Error()
		}
	}
	return execFailure(errno, stageExec, msg)
}
