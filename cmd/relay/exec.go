package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"agentrelay/client"
	"agentrelay/frame"
)

// execCmd runs one command through a relay and exits with its code.
func execCmd(args []string) int {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	socket := fs.String("socket", "", "the relay's socket")
	tty := fs.Bool("t", false, "run the command under a pseudo-terminal")
	var env listFlag
	fs.Var(&env, "e", "set an environment variable K=V (repeatable)")
	cwd := fs.String("w", "", "working directory in the guest")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *socket == "" || fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: relay exec --socket PATH [-t] [-e K=V]... [-w DIR] -- CMD [ARGS...]")
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	conn, err := client.Dial(ctx, *socket)
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay exec: %v\n", err)
		return 1
	}
	defer conn.Close()

	req := frame.ExecRequest{Cmd: fs.Arg(0), Args: fs.Args()[1:], Env: env, TTY: *tty,
		Rows: frame.DefaultRows, Cols: frame.DefaultCols, Rlimits: []frame.Rlimit{}}
	if req.Env == nil {
		req.Env = []string{}
	}
	if *cwd != "" {
		req.Cwd = cwd
	}
	if *tty {
		if ws, err := unix.IoctlGetWinsize(int(os.Stdout.Fd()), unix.TIOCGWINSZ); err == nil {
			req.Rows, req.Cols = ws.Row, ws.Col
		}
		if restore, err := rawTerminal(int(os.Stdin.Fd())); err == nil {
			defer restore()
		}
	}
	code, err := runExec(ctx, conn, req, os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay exec: %v\n", err)
		if errors.Is(err, errExecFailed) {
			return 127
		}
		return 1
	}
	return code
}

var errExecFailed = errors.New("command failed to start")

// runExec runs one exec session: request, stdin forwarding (EOF included),
// output streaming, and the exit code. Cancelling ctx SIGKILLs the command.
func runExec(ctx context.Context, conn *client.Conn, req frame.ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	s, err := conn.Request(ctx, frame.TypeExecRequest, req)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	started := false
	for {
		m, err := s.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				s.Send(frame.TypeExecSignal, frame.ExecSignal{Signal: 9})
			}
			return 0, fmt.Errorf("session %d: %w", s.ID(), err)
		}
		switch m.Type {
		case frame.TypeExecStarted:
			if !started {
				started = true
				go forwardStdin(s, stdin)
			}
		case frame.TypeExecStdout, frame.TypeExecStderr:
			var out frame.ExecStdout
			if err := m.Into(&out); err != nil {
				return 0, err
			}
			w := stdout
			if m.Type == frame.TypeExecStderr {
				w = stderr
			}
			w.Write(out.Data)
		case frame.TypeExecExited:
			var ex frame.ExecExited
			if err := m.Into(&ex); err != nil {
				return 0, err
			}
			return int(ex.Code), nil
		case frame.TypeExecFailed:
			var f frame.ExecFailed
			if err := m.Into(&f); err != nil {
				return 0, err
			}
			msg := fmt.Sprintf("%s: %s", f.Kind, f.Message)
			if f.ErrnoName != nil {
				msg += " (" + *f.ErrnoName + ")"
			}
			if f.Stage != nil {
				msg += " at " + *f.Stage
			}
			return 0, fmt.Errorf("%w: %s", errExecFailed, msg)
		}
	}
}

// forwardStdin sends stdin in chunks of at most 64 KiB, then an empty chunk:
// EOF for the command.
func forwardStdin(s *client.Stream, r io.Reader) {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if s.Send(frame.TypeExecStdin, frame.ExecStdin{Data: buf[:n]}) != nil {
				return
			}
		}
		if err != nil {
			s.Send(frame.TypeExecStdin, frame.ExecStdin{Data: []byte{}})
			return
		}
	}
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
