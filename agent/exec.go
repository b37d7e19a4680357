package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// startSession answers one core.exec.request: core.exec.failed, or
// core.exec.started followed (from the session's goroutines) by the output
// and core.exec.exited.
func (a *server) startSession(id uint32, req *frame.ExecRequest) {
	if a.session(id) != nil {
		a.sendFailed(id, failure(frame.FailOther, "", fmt.Sprintf("session %d is already running", id), nil))
		return
	}
	s, fail := a.spawn(id, req)
	if fail != nil {
		a.sendFailed(id, fail)
		return
	}
	a.mu.Lock()
	a.sessions[id] = s
	a.mu.Unlock()
	// core.exec.started goes out before any output: the output readers
	// start only after it; meanwhile output waits in the pipe or pty. A
	// failed send means the relay is gone; the session still runs to its
	// end so that nothing leaks.
	a.send(id, frame.TypeExecStarted, frame.ExecStarted{Pid: uint32(s.pid)})
	s.run()
}

// A limit is one parsed rlimit of a request.
type limit struct {
	resource int
	rlim     unix.Rlimit
}

// spawn starts the process of req, or says why it could not.
func (a *server) spawn(id uint32, req *frame.ExecRequest) (*session, *frame.ExecFailed) {
	if req.Cmd == "" {
		return nil, badArgs("empty cmd")
	}
	if strings.IndexByte(req.Cmd, 0) >= 0 {
		return nil, badArgs("cmd contains a NUL byte")
	}
	for _, arg := range req.Args {
		if strings.IndexByte(arg, 0) >= 0 {
			return nil, badArgs("argument contains a NUL byte")
		}
	}

	var (
		cred *syscall.Credential
		u    *user.User
	)
	if req.User != nil && *req.User != "" {
		var err error
		if cred, u, err = credential(*req.User); err != nil {
			return nil, failure(frame.FailUserSetupFailed, stageUser, err.Error(), err)
		}
	} else {
		u, _ = user.Current()
	}

	base := a.opts.Env
	if base == nil {
		base = DefaultEnv(u, req.TTY)
	}
	env, err := mergeEnv(base, req.Env)
	if err != nil {
		return nil, badArgs(err.Error())
	}

	// Checked here because the fork/exec path reports a failed chdir with
	// the same bare errno as a failed exec.
	var dir string
	if req.Cwd != nil && *req.Cwd != "" {
		dir = *req.Cwd
		fi, err := os.Stat(dir)
		if err == nil && !fi.IsDir() {
			err = &os.PathError{Op: "stat", Path: dir, Err: unix.ENOTDIR}
		}
		if err != nil {
			return nil, failure(frame.FailBadCwd, stageCwd, "bad cwd: "+err.Error(), err)
		}
	}

	path, err := lookPath(req.Cmd, env, dir)
	if err != nil {
		return nil, startFailure(req.Cmd, err)
	}

	limits := make([]limit, 0, len(req.Rlimits))
	for _, rl := range req.Rlimits {
		r, err := rlimitResource(rl.Resource)
		if err != nil {
			return nil, badArgs(err.Error())
		}
		if rl.Soft > rl.Hard {
			return nil, failure(frame.FailResourceLimit, stageRlimit,
				fmt.Sprintf("rlimit %s: soft limit %d above hard limit %d", rl.Resource, rl.Soft, rl.Hard), unix.EINVAL)
		}
		limits = append(limits, limit{r, unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}})
	}

	cmd := &exec.Cmd{
		Path:        path,
		Args:        append([]string{req.Cmd}, req.Args...),
		Env:         env,
		Dir:         dir,
		SysProcAttr: &syscall.SysProcAttr{Credential: cred},
	}
	s := &session{a: a, id: id, tty: req.TTY}
	// childEnds are the child's copies of its stdio, closed here once
	// the child has them, so that EOF (or EIO) arrives when it is done.
	var childEnds []*os.File
	defer func() {
		for _, f := range childEnds {
			f.Close()
		}
	}()
	if req.TTY {
		master, tty, err := openPTY(req.Rows, req.Cols)
		if err != nil {
			return nil, failure(frame.FailPtySetupFailed, stagePty, "pty: "+err.Error(), err)
		}
		childEnds = append(childEnds, tty)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		// A new session with the pty as controlling terminal (fd 0 in
		// the child), so ^C and job control work and signals to the
		// process group reach the whole job.
		cmd.SysProcAttr.Setsid = true
		cmd.SysProcAttr.Setctty = true
		s.master = master
		s.outputs = []*os.File{master}
		s.stdin = newInbox(master, true)
	} else {
		var fds [6]*os.File
		for i := 0; i < 6; i += 2 {
			r, w, err := os.Pipe()
			if err != nil {
				for _, f := range fds[:i] {
					f.Close()
				}
				return nil, failure(frame.FailResourceLimit, stagePipe, "pipe: "+err.Error(), err)
			}
			fds[i], fds[i+1] = r, w
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = fds[0], fds[3], fds[5]
		childEnds = append(childEnds, fds[0], fds[3], fds[5])
		// Its own process group, so a signal reaches the whole job.
		cmd.SysProcAttr.Setpgid = true
		s.outputs = []*os.File{fds[2], fds[4]}
		s.stdin = newInbox(fds[1], false)
	}
	var fail *frame.ExecFailed
	wait, err := a.opts.Reaper.Start(func() (int, error) {
		if fail = startProcess(cmd, limits); fail != nil {
			return 0, errStart
		}
		a.opts.Watchdog.watch(cmd.Process.Pid, req.TTY)
		return cmd.Process.Pid, nil
	}, s.markExited)
	if err != nil {
		s.closeFiles()
		if fail == nil {
			fail = failure(frame.FailOther, stageExec, err.Error(), err)
		}
		return nil, fail
	}
	s.cmd = cmd
	s.pid = cmd.Process.Pid
	s.waitExit = wait
	return s, nil
}

// startProcess starts cmd with limits applied before its first
// instruction.
//
// Go cannot run code in the child between fork and exec, and prlimit on
// the child after Start races with the program it runs. So when there are
// limits, the child is started traced (PTRACE_TRACEME just before execve):
// it stops on the exec's SIGTRAP, the limits are set with prlimit while it
// is stopped, and it is detached. ptrace needs the same thread throughout,
// hence LockOSThread. Without limits it is a plain Start.
//
// Where ptrace is forbidden (a seccomp profile, gVisor), TRACEME fails with
// EPERM before the exec, so nothing ran; the command is then started
// untraced and limited right after Start, which is racy but better than
// nothing.
func startProcess(cmd *exec.Cmd, limits []limit) *frame.ExecFailed {
	if len(limits) == 0 {
		if err := cmd.Start(); err != nil {
			return startFailure(cmd.Args[0], err)
		}
		return nil
	}
	fail, err := startTraced(cmd, limits)
	if !errors.Is(err, unix.EPERM) {
		return fail
	}
	// A fresh Cmd: one whose Start failed cannot be started again.
	attr := *cmd.SysProcAttr
	attr.Ptrace = false
	*cmd = exec.Cmd{
		Path: cmd.Path, Args: cmd.Args, Env: cmd.Env, Dir: cmd.Dir,
		Stdin: cmd.Stdin, Stdout: cmd.Stdout, Stderr: cmd.Stderr,
		SysProcAttr: &attr,
	}
	if err := cmd.Start(); err != nil {
		return startFailure(cmd.Args[0], err)
	}
	if fail := setLimits(cmd, limits); fail != nil {
		return fail
	}
	return nil
}

// startTraced is startProcess's ptrace path. It returns the Start error
// too, for the EPERM fallback.
func startTraced(cmd *exec.Cmd, limits []limit) (*frame.ExecFailed, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr.Ptrace = true
	if err := cmd.Start(); err != nil {
		return startFailure(cmd.Args[0], err), err
	}
	pid := cmd.Process.Pid
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err != unix.EINTR {
			break
		}
	}
	if !ws.Stopped() {
		// Killed between exec and the trap: it has been reaped already.
		cmd.Process.Release()
		return failure(frame.FailOther, stageRlimit, "process ended before its rlimits were set", nil), nil
	}
	if fail := setLimits(cmd, limits); fail != nil {
		unix.PtraceDetach(pid)
		cmd.Wait()
		return fail, nil
	}
	if err := unix.PtraceDetach(pid); err != nil {
		unix.Kill(pid, unix.SIGKILL)
		cmd.Wait()
		return failure(frame.FailOther, stageRlimit, "ptrace detach: "+err.Error(), err), nil
	}
	return nil, nil
}

// setLimits applies limits to the started cmd, killing it if one fails.
func setLimits(cmd *exec.Cmd, limits []limit) *frame.ExecFailed {
	pid := cmd.Process.Pid
	for _, l := range limits {
		if err := unix.Prlimit(pid, l.resource, &l.rlim, nil); err != nil {
			unix.Kill(pid, unix.SIGKILL)
			if !cmd.SysProcAttr.Ptrace {
				cmd.Wait()
			}
			return failure(frame.FailResourceLimit, stageRlimit, "prlimit: "+err.Error(), err)
		}
	}
	return nil
}
