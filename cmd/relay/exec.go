package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/client"
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

	opts := client.ExecOptions{
		Cmd: fs.Arg(0), Args: fs.Args()[1:], Env: env, Cwd: *cwd, TTY: *tty,
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
	}
	if *tty {
		if ws, err := unix.IoctlGetWinsize(int(os.Stdout.Fd()), unix.TIOCGWINSZ); err == nil {
			opts.Rows, opts.Cols = ws.Row, ws.Col
		}
		if restore, err := rawTerminal(int(os.Stdin.Fd())); err == nil {
			defer restore()
		}
	}
	code, err := conn.Exec(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay exec: %v\n", err)
		var failed *client.ExecFailedError
		if errors.As(err, &failed) {
			return 127 // as a shell reports a command it could not run
		}
		return 1
	}
	return code
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
