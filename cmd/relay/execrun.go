//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/client"
	"github.com/agentrelay/agentrelay/frame"
)

// forwarded are the signals relay exec passes on to the command.
var forwarded = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT}

// interruptWindow is how soon a second SIGINT must follow the first to
// escalate to SIGKILL.
const interruptWindow = time.Second

// runExec runs the command described by opts and returns relay exec's
// exit code.
func runExec(f *execFlags, opts client.ExecOptions) int {
	x := &execution{flags: f, opts: opts, termFd: -1}
	code, err := x.run()
	// Reported after run has put the terminal back out of raw mode.
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay exec: %v\n", err)
	}
	return code
}

// execution is one relay exec run.
type execution struct {
	flags  *execFlags
	opts   client.ExecOptions
	termFd int  // the local terminal whose size the remote one follows; -1: none
	raw    bool // the local terminal is in raw mode: a line needs "\r\n"
}

func (x *execution) run() (int, error) {
	f := x.flags
	// Caught from the start: a signal that arrives while connecting ends
	// relay exec with 128+N (nothing runs yet); a later one goes to the
	// command.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	var winch chan os.Signal
	if f.tty {
		// Before the size is first read, so that no change is lost.
		winch = make(chan os.Signal, 1)
		signal.Notify(winch, unix.SIGWINCH)
		defer signal.Stop(winch)
		x.termFd = terminalFd()
	}
	var deadline <-chan time.Time
	if f.timeout > 0 {
		t := time.NewTimer(f.timeout)
		defer t.Stop()
		deadline = t.C
	}

	conn, code, err := dial(f.socket, sigs, deadline)
	if conn == nil {
		return code, err
	}
	defer conn.Close()

	if f.tty {
		if ws, ok := winsize(x.termFd); ok {
			x.opts.Rows, x.opts.Cols = ws.Row, ws.Col
		}
		if !f.noStdin {
			if restore, err := rawTerminal(int(os.Stdin.Fd())); err == nil {
				x.raw = true
				defer restore()
			}
		}
	}
	if !f.noStdin {
		x.opts.Stdin = os.Stdin
	}
	x.opts.Stdout, x.opts.Stderr = os.Stdout, os.Stderr
	started := make(chan uint32, 1)
	x.opts.Started = func(id, _ uint32) { started <- id }
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Never cancelled: relay exec ends the command with signals, so
		// that its traps run, and waits for its status.
		code, err := conn.Exec(context.Background(), x.opts)
		done <- result{code, err}
	}()

	var (
		id        uint32
		isStarted bool
		pending   []syscall.Signal // signals to send once the session exists
		resizeDue bool             // the size changed before the session existed
		lastInt   time.Time
		kill      <-chan time.Time
		timedOut  bool
	)
	// Errors of Signal and Resize are the connection's: Exec reports them.
	signalCmd := func(sig syscall.Signal) {
		if !isStarted {
			pending = append(pending, sig)
			return
		}
		conn.Signal(id, int(sig))
	}
	resize := func() {
		if ws, ok := winsize(x.termFd); ok {
			conn.Resize(id, ws.Row, ws.Col)
		}
	}
	for {
		select {
		case id = <-started:
			isStarted = true
			for _, sig := range pending {
				signalCmd(sig)
			}
			pending = nil
			if resizeDue {
				resize()
			}
		case <-winch:
			if isStarted {
				resize()
			} else {
				resizeDue = true
			}
		case s := <-sigs:
			sig := s.(syscall.Signal)
			now := time.Now()
			if sig == unix.SIGINT {
				if now.Sub(lastInt) < interruptWindow {
					x.say("relay exec: second interrupt within %v: sending SIGKILL", interruptWindow)
					sig = unix.SIGKILL
				}
				lastInt = now
			}
			signalCmd(sig)
		case <-deadline:
			deadline, timedOut = nil, true
			signalCmd(unix.SIGTERM)
			kill = time.After(f.killAfter)
		case <-kill:
			kill = nil
			signalCmd(unix.SIGKILL)
		case r := <-done:
			return exitStatus(x.opts.Cmd, r.code, r.err, timedOut)
		}
	}
}

// say writes one line to stderr, which may be a terminal in raw mode.
func (x *execution) say(format string, args ...any) {
	eol := "\n"
	if x.raw {
		eol = "\r\n"
	}
	fmt.Fprintf(os.Stderr, format+eol, args...)
}

// exitStatus maps Exec's result to relay exec's exit code and the error
// to report, if any.
func exitStatus(cmd string, code int, err error, timedOut bool) (int, error) {
	var failed *client.ExecFailedError
	switch {
	case errors.As(err, &failed):
		err = fmt.Errorf("cannot run %q: %s", cmd, failed.Reason())
		if failed.Kind == frame.FailNotFound {
			return exitNotFound, err
		}
		return exitCannotRun, err
	case code >= 0:
		// The command ran; err, if any, is about copying its stdin or
		// output, which does not change its status.
		if err != nil {
			err = errors.New(plain(err))
		}
		if timedOut {
			return exitTimeout, err
		}
		return code, err
	case errors.Is(err, client.ErrDisconnected) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, unix.ECONNRESET):
		return exitRelay, fmt.Errorf("the relay closed the connection before %q ended (see the relay's log)", cmd)
	}
	return exitRelay, errors.New(plain(err))
}

// dial connects to the relay. A signal or the timeout ends the attempt:
// nothing runs yet, so relay exec just ends (128+N, or 124).
func dial(socket string, sigs <-chan os.Signal, deadline <-chan time.Time) (*client.Conn, int, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type dialed struct {
		c   *client.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := client.Dial(ctx, socket)
		ch <- dialed{c, err}
	}()
	var code int
	select {
	case d := <-ch:
		if d.err != nil {
			return nil, exitRelay, dialError(socket, d.err)
		}
		return d.c, 0, nil
	case s := <-sigs:
		code = 128 + int(s.(syscall.Signal))
	case <-deadline:
		code = exitTimeout
	}
	cancel()
	if d := <-ch; d.c != nil {
		d.c.Close()
	}
	return nil, code, nil
}

func dialError(socket string, err error) error {
	var op *net.OpError
	if errors.Is(err, client.ErrClosedBeforeHandshake) || !errors.As(err, &op) || op.Op != "dial" {
		return errors.New(plain(err))
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("cannot connect to the relay at %s: %v", socket, op.Err)
	}
	msg := fmt.Sprintf("cannot connect to the relay at %s: %v", socket, errno)
	if errno == unix.ENOENT || errno == unix.ECONNREFUSED {
		msg += fmt.Sprintf(" (is it running? Give its socket with --socket or %s)", client.SocketEnv)
	}
	return errors.New(msg)
}

// plain is a client error's message without the package's prefix: relay
// exec speaks for itself.
func plain(err error) string {
	return strings.TrimPrefix(err.Error(), "client: ")
}

// terminalFd returns the first of stdin, stdout and stderr that is a
// terminal, or -1.
func terminalFd() int {
	for fd := range 3 {
		if _, ok := winsize(fd); ok {
			return fd
		}
	}
	return -1
}

func winsize(fd int) (*unix.Winsize, bool) {
	if fd < 0 {
		return nil, false
	}
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil || ws.Row == 0 || ws.Col == 0 {
		return nil, false
	}
	return ws, true
}

// rawTerminal puts a terminal in raw mode so keystrokes reach the remote
// pty unchanged; it returns how to undo it. Not a terminal: an error.
func rawTerminal(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
