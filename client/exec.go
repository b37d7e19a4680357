package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unicode/utf8"

	"github.com/agentrelay/agentrelay/frame"
)

// StdinChunk is the most stdin data Exec puts into one core.exec.stdin frame.
const StdinChunk = 64 << 10

// SIGKILL is the signal Exec sends when its context ends, as the relay does
// for a disconnecting client's sessions.
const SIGKILL = 9

// ExecOptions describe one process to run in the guest.
type ExecOptions struct {
	Cmd  string
	Args []string
	Env  []string // "KEY=VALUE"
	Cwd  string   // empty: the guest's default
	User string   // empty: the guest's default
	TTY  bool     // allocate a pty; stdout then carries stdout and stderr merged
	Rows uint16   // pty size; 0 means frame.DefaultRows
	Cols uint16   // 0 means frame.DefaultCols

	Rlimits []frame.Rlimit

	// Stdin is forwarded in chunks of up to StdinChunk bytes, then closed
	// with an empty stdin frame when it returns EOF (or fails). A nil Stdin
	// is an empty one: the process sees EOF at once, as with os/exec.
	Stdin io.Reader
	// Stdout and Stderr receive the process's output; nil discards it.
	Stdout, Stderr io.Writer

	// Started, if set, is called once the guest has started the process,
	// with the session id (for Signal and Resize) and the guest pid.
	Started func(id, pid uint32)
}

// ExecFailedError is the guest's core.exec.failed: the process never ran.
type ExecFailedError struct {
	Cmd string
	ID  uint32 // the session id
	frame.ExecFailed
}

func (e *ExecFailedError) Error() string {
	return fmt.Sprintf("client: exec %q failed: %s", e.Cmd, e.Reason())
}

// Reason is the guest's account of the failure: kind, message, and the
// stage and errno where it gave them.
func (e *ExecFailedError) Reason() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", e.Kind, e.Message)
	var detail []string
	if e.Stage != nil {
		detail = append(detail, "stage "+*e.Stage)
	}
	if e.Errno != nil || e.ErrnoName != nil {
		s := "errno"
		if e.Errno != nil {
			s += fmt.Sprintf(" %d", *e.Errno)
		}
		if e.ErrnoName != nil {
			s += " " + *e.ErrnoName
		}
		detail = append(detail, s)
	}
	if len(detail) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(detail, ", "))
	}
	return b.String()
}

// Unwrap exposes the guest's errno, so that errors.Is(err, syscall.ENOENT)
// works (the guest is Linux, like the host this package builds for).
func (e *ExecFailedError) Unwrap() error {
	if e.Errno == nil || *e.Errno <= 0 {
		return nil
	}
	return syscall.Errno(*e.Errno)
}

// Exec runs a process in the guest and waits for it. It returns the exit
// code from core.exec.exited. err is an *ExecFailedError if the guest could
// not start the process, ctx.Err() if ctx ended first (the process is then
// sent SIGKILL), a connection error, an error copying stdin or writing
// output that happened while the process ran (the code is still valid then),
// or, with nothing sent, an error naming a string of o that is not valid
// UTF-8 (the protocol carries text).
func (c *Conn) Exec(ctx context.Context, o ExecOptions) (code int, err error) {
	if err := o.checkUTF8(); err != nil {
		return -1, err
	}
	req := frame.ExecRequest{
		Cmd: o.Cmd, Args: o.Args, Env: o.Env, TTY: o.TTY,
		Rows: o.Rows, Cols: o.Cols, Rlimits: o.Rlimits,
	}
	if req.Rows == 0 {
		req.Rows = frame.DefaultRows
	}
	if req.Cols == 0 {
		req.Cols = frame.DefaultCols
	}
	if o.Cwd != "" {
		req.Cwd = &o.Cwd
	}
	if o.User != "" {
		req.User = &o.User
	}
	s, err := c.Request(ctx, frame.TypeExecRequest, &req)
	if err != nil {
		return -1, err
	}
	x := &execution{s: s, o: &o}
	defer x.finish()
	return x.run(ctx)
}

// checkUTF8 refuses strings that are not valid UTF-8 before anything is
// sent: CBOR text must be, and the guest answers invalid text with
// bad_args at best. Arguments count from 1, the command being argument 0,
// as in argv.
func (o *ExecOptions) checkUTF8() error {
	bad := func(what string, s string) error {
		return errorf("exec: %s is not valid UTF-8: %s", what, strconv.Quote(s))
	}
	if !utf8.ValidString(o.Cmd) {
		return bad("the command", o.Cmd)
	}
	for i, a := range o.Args {
		if !utf8.ValidString(a) {
			return bad(fmt.Sprintf("argument %d", i+1), a)
		}
	}
	for _, e := range o.Env {
		if !utf8.ValidString(e) {
			return bad("environment entry", e)
		}
	}
	if !utf8.ValidString(o.Cwd) {
		return bad("the working directory", o.Cwd)
	}
	if !utf8.ValidString(o.User) {
		return bad("the user", o.User)
	}
	return nil
}

// execution is one Exec call's state.
type execution struct {
	s *Stream
	o *ExecOptions

	done    atomic.Bool // Exec returned: the stdin pump must send nothing more
	pumping bool        // the stdin pump runs (started arrived)

	mu      sync.Mutex
	copyErr error // the first stdin or output error
}

func (x *execution) finish() {
	x.done.Store(true)
	x.s.Close()
}

func (x *execution) fail(err error) {
	x.mu.Lock()
	if x.copyErr == nil {
		x.copyErr = err
	}
	x.mu.Unlock()
}

func (x *execution) run(ctx context.Context) (int, error) {
	stdout, stderr := x.o.Stdout, x.o.Stderr
	for {
		raw, err := x.s.next(ctx)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				// The session is open at the guest: kill it rather than
				// leave it running for nobody.
				x.s.Send(frame.TypeExecSignal, &frame.ExecSignal{Signal: SIGKILL})
				return -1, ctxErr
			}
			if err == io.EOF {
				err = errors.New("session ended without core.exec.exited")
			}
			return -1, errorf("exec %q (id %d): %w", x.o.Cmd, x.s.id, err)
		}
		f, err := frame.Split(raw)
		if err != nil {
			return -1, x.protocolErr(err)
		}
		// The output path peeks the data out of the frame in place: raw
		// is ours, no decode, no copy.
		p, err := frame.Peek(f.Body)
		if err != nil {
			return -1, x.protocolErr(err)
		}
		switch p.Type {
		case frame.TypeExecStdout:
			stdout = x.write(stdout, p.Data, "stdout")
		case frame.TypeExecStderr:
			stderr = x.write(stderr, p.Data, "stderr")
		case frame.TypeExecStarted:
			var st frame.ExecStarted
			if err := x.into(f, &st); err != nil {
				return -1, err
			}
			if x.o.Started != nil {
				x.o.Started(x.s.id, st.Pid)
			}
			if !x.pumping {
				x.pumping = true
				go x.pumpStdin()
			}
		case frame.TypeExecExited:
			var ex frame.ExecExited
			if err := x.into(f, &ex); err != nil {
				return -1, err
			}
			x.mu.Lock()
			err := x.copyErr
			x.mu.Unlock()
			return int(ex.Code), err
		case frame.TypeExecFailed:
			e := &ExecFailedError{Cmd: x.o.Cmd, ID: x.s.id}
			if err := x.into(f, &e.ExecFailed); err != nil {
				return -1, err
			}
			return -1, e
		}
		// Anything else is for a newer protocol: ignore it.
	}
}

// write writes to w and returns the writer to use next time: nil after an
// error, so that one broken writer is reported once and the rest discarded.
func (x *execution) write(w io.Writer, data []byte, name string) io.Writer {
	if w == nil || len(data) == 0 {
		return w
	}
	if _, err := w.Write(data); err != nil {
		x.fail(errorf("exec %q: writing %s: %w", x.o.Cmd, name, err))
		return nil
	}
	return w
}

func (x *execution) into(f frame.Frame, v any) error {
	m, err := frame.DecodeFrame(f)
	if err == nil {
		err = m.Into(v)
	}
	if err != nil {
		return x.protocolErr(err)
	}
	return nil
}

func (x *execution) protocolErr(err error) error {
	return errorf("exec %q (id %d): bad frame from guest: %w", x.o.Cmd, x.s.id, err)
}

// pumpStdin forwards Stdin and then closes it at the guest. It may outlive
// Exec while blocked in Read (there is no way to interrupt an io.Reader);
// it then sends nothing more.
func (x *execution) pumpStdin() {
	if r := x.o.Stdin; r != nil {
		buf := make([]byte, StdinChunk)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if x.done.Load() {
					return
				}
				if err := x.s.Send(frame.TypeExecStdin, &frame.ExecStdin{Data: buf[:n]}); err != nil {
					x.fail(err)
					return
				}
			}
			if err != nil {
				if err != io.EOF {
					x.fail(errorf("exec %q: reading stdin: %w", x.o.Cmd, err))
				}
				break
			}
		}
	}
	if x.done.Load() {
		return
	}
	if err := x.s.Send(frame.TypeExecStdin, &frame.ExecStdin{Data: []byte{}}); err != nil {
		x.fail(err)
	}
}

// Signal sends signal sig to the process of session id.
func (c *Conn) Signal(id uint32, sig int) error {
	return c.Send(id, frame.TypeExecSignal, &frame.ExecSignal{Signal: int32(sig)})
}

// Resize sets the pty size of session id.
func (c *Conn) Resize(id uint32, rows, cols uint16) error {
	return c.Send(id, frame.TypeExecResize, &frame.ExecResize{Rows: rows, Cols: cols})
}

// Shutdown asks the guest to stop every process and power off. It is sent
// under id 0, which no session uses.
func (c *Conn) Shutdown() error {
	return c.Send(0, frame.TypeShutdown, nil)
}
