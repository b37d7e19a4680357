package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// Warning is what a binary serving the agent in host-process mode (the
// relay's builtin guest) should log: there the agent is a stand-in for a
// guest, not a sandbox.
const Warning = "builtin guest: commands run as host processes with the relay's privileges; it offers no isolation"

// Defaults for Options.
const (
	DefaultShutdownGrace = 2 * time.Second
	DefaultOutputGrace   = 250 * time.Millisecond
)

// OutputChunk is the largest data a core.exec.stdout, core.exec.stderr or
// core.fs.data frame from the agent carries.
const OutputChunk = 64 << 10

// Options configure an Agent. The zero value is ready to use.
type Options struct {
	// Ready is the core.ready frame sent first on every connection;
	// empty means DefaultReady().
	Ready []byte
	// Env is the base environment of every command; nil means DefaultEnv
	// for the target user. A request's env entries are laid over it, the
	// request winning per key: a request cannot remove a base variable,
	// only override it (give it an empty value).
	Env []string
	// ShutdownGrace is how long sessions get between SIGTERM and SIGKILL
	// after core.shutdown; 0 means DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// OutputGrace is how long output is still streamed after a command
	// exits while something else (a background child) holds its stdout,
	// stderr or terminal open; 0 means DefaultOutputGrace. Output written
	// after that is not streamed, so that core.exec.exited is not held
	// back for ever.
	OutputGrace time.Duration
	// Reaper collects the commands' exit statuses; nil means a
	// HostReaper. A process that reaps every child (PID 1) must pass its
	// InitReaper, or the two would race for the statuses.
	Reaper Reaper
	// Watchdog, if set, kills the commands when the process running the
	// agent dies, even by SIGKILL (host-process mode; a VM's commands
	// die with the VM).
	Watchdog *Watchdog
}

// DefaultReady returns a core.ready frame with plausible boot timings (a
// microVM that booted in 118 ms), for agents that did not boot anything.
func DefaultReady() []byte {
	b, err := frame.AppendMessage(nil, 0, frame.TypeReady, frame.Ready{
		BootTimeNs:  118_000_000,
		InitTimeNs:  4_200_000,
		ReadyTimeNs: 122_500_000,
	})
	if err != nil {
		panic("agent: encode core.ready: " + err.Error()) // fixed input: cannot happen
	}
	return b
}

// A Conn is one host connection: the byte stream the protocol's frames
// travel on. Read returns host→guest bytes and io.EOF when the host hung
// up; Write takes guest→host bytes, whole or failing. The agent calls Write
// from several goroutines, one at a time, and Read from one.
type Conn interface {
	io.Reader
	io.Writer
	// Close makes blocked and later Reads and Writes fail at once. It
	// ends this connection only, not the device under it.
	Close() error
}

// An Agent is the guest agent: it runs exec and file-system requests and
// speaks the protocol to one host connection at a time (Serve). agentd runs
// it as a VM's init on a virtio-serial port; the relay's builtin guest runs
// it in-process on a ring.Console (ServeConsole).
//
// In the builtin guest IT RUNS COMMANDS AS HOST PROCESSES, with the
// privileges of the process that runs it, and its file-system operations
// touch the host's file system. There it isolates nothing; it exists so
// that the relay can be run and tested without a microVM. Log Warning
// when using it that way.
//
// What it does per message:
//
//   - core.exec.request: start the command, answer core.exec.started or
//     core.exec.failed, stream its output, end with core.exec.exited once
//     the process has exited and its output has been streamed.
//   - core.exec.stdin, core.exec.signal, core.exec.resize: deliver to the
//     session with that id; frames for unknown ids are ignored.
//   - core.fs.request: Stat, List, Read, Write, Mkdir, Remove, RemoveDir,
//     Copy, Rename. Read streams core.fs.data chunks of up to 1 MiB, then
//     core.fs.response; Write takes core.fs.data chunks until an empty
//     one, then responds. Errors read as Rust's io::Error ("No such file
//     or directory (os error 2)").
//   - core.shutdown: SIGTERM every session, SIGKILL what is left after
//     ShutdownGrace, and stop.
//
// How a command is run:
//
//   - cmd is looked up in the PATH of the command's own environment
//     (execvp rules); args follow it, argv[0] is cmd as given.
//   - The environment is Options.Env (or DefaultEnv) with the request's
//     entries laid over it, the request winning per key.
//   - cwd defaults to the agent's working directory; a missing or
//     non-directory cwd fails with bad_cwd before anything is started.
//   - user (NAME, UID, NAME:GROUP or UID:GID) switches uid, gid and
//     supplementary groups, which needs root; it is otherwise honoured only
//     if it names the current user, and fails with user_setup_failed.
//   - rlimits are set while the child is stopped at its exec (see
//     startProcess), so they hold from the program's first instruction.
//   - Pipe mode: stdout and stderr are separate streams; the command leads
//     its own process group. An empty core.exec.stdin closes stdin.
//   - tty mode: a pseudo-terminal of rows×cols is the command's controlling
//     terminal and its stdin, stdout and stderr, all output arriving as
//     core.exec.stdout; an empty core.exec.stdin types ^D (the terminal's
//     EOF), since closing the terminal would hang it up.
//   - core.exec.signal goes to the command's process group (the command
//     and what it started), never to a reused pid.
//   - The exit code is the exit status, or 128+N when signal N killed the
//     process, as a shell reports it.
//   - Output is streamed in chunks of at most OutputChunk bytes. A
//     background process that keeps the output open after the command
//     exits is given OutputGrace of silence, then the session ends
//     without it.
//   - When the connection ends, its sessions are killed (SIGKILL to their
//     process groups) and their remaining output is dropped: nothing owed
//     to one host reaches the next.
type Agent struct {
	opts Options
}

// New returns an Agent; it serves nothing until Serve is called.
func New(opts Options) *Agent {
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = DefaultShutdownGrace
	}
	if opts.OutputGrace <= 0 {
		opts.OutputGrace = DefaultOutputGrace
	}
	if opts.Reaper == nil {
		opts.Reaper = HostReaper{}
	}
	if len(opts.Ready) == 0 {
		opts.Ready = DefaultReady()
	}
	return &Agent{opts: opts}
}

// ErrCorruptStream is returned by Serve when the host's byte stream does
// not frame: the frame boundary is lost and nothing after it can be
// trusted.
var ErrCorruptStream = errors.New("agent: corrupt host stream")

// ErrShutdown is returned by Serve when the host sent core.shutdown.
var ErrShutdown = errors.New("agent: shutdown requested")

// A server is the agent on one connection: its sessions and pending
// writes live and die with it.
type server struct {
	opts Options
	conn Conn

	// wmu serialises whole frames onto conn: frames must not
	// interleave. wbuf is the encode buffer.
	wmu  sync.Mutex
	wbuf []byte
	// stopped makes every later send fail without touching conn. It is
	// not under wmu: a send blocked in conn holds wmu until the stop
	// closes conn.
	stopped atomic.Bool

	mu       sync.Mutex
	sessions map[uint32]*session

	// writes are fs Write requests awaiting their data; only Serve's
	// goroutine touches them.
	writes map[uint32]*fsWrite

	wg sync.WaitGroup // every goroutine the server started
}

// Serve sends the ready frame on conn, then serves host frames until the
// host hangs up (nil), core.shutdown arrives (ErrShutdown), or ctx ends
// (ctx.Err()). On the first two, sessions are signalled (SIGKILL for a
// hang-up, SIGTERM then SIGKILL for shutdown) and Serve waits for them,
// sending what they still write while conn takes it; on ctx's end they are
// killed and their remaining frames are not sent. Either way every
// goroutine Serve started has ended, and conn is closed, when Serve
// returns. Serve may be called again, with a new connection, once it has
// returned.
func (ag *Agent) Serve(ctx context.Context, conn Conn) error {
	a := &server{
		opts:     ag.opts,
		conn:     conn,
		sessions: make(map[uint32]*session),
		writes:   make(map[uint32]*fsWrite),
	}
	defer conn.Close()
	// Closing conn is what interrupts a Read or Write blocked in it. If
	// that has started, Serve waits for it: the caller may free conn's
	// resources once Serve has returned.
	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		a.stopWrites()
	})
	defer func() {
		if !stop() {
			<-stopped
		}
	}()

	if err := a.sendRaw(a.opts.Ready); err != nil {
		return a.end(ctx, syscall.SIGKILL, 0, err)
	}

	sc := frame.NewScanner(0)
	for {
		for {
			f, err := sc.Next()
			if err == frame.ErrIncomplete {
				break
			}
			if err != nil {
				return a.end(ctx, syscall.SIGKILL, a.opts.OutputGrace, fmt.Errorf("%w: %w", ErrCorruptStream, err))
			}
			if a.dispatch(f) {
				return a.end(ctx, syscall.SIGTERM, a.opts.ShutdownGrace, ErrShutdown)
			}
		}
		n, err := conn.Read(sc.Space())
		sc.Commit(n)
		if n > 0 {
			continue
		}
		// A host that hangs up with our output unread resets the
		// connection instead of ending it: the same hang-up.
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			if sc.Buffered() > 0 {
				err = fmt.Errorf("%w: %d bytes of a partial frame at the end", ErrCorruptStream, sc.Buffered())
				return a.end(ctx, syscall.SIGKILL, a.opts.OutputGrace, err)
			}
			return a.end(ctx, syscall.SIGKILL, a.opts.OutputGrace, nil)
		}
		if err != nil {
			return a.end(ctx, syscall.SIGKILL, 0, fmt.Errorf("agent: read from host: %w", err))
		}
	}
}

// stopWrites makes every pending and later send fail: the connection is
// closed, so a Write blocked in it returns.
func (a *server) stopWrites() {
	a.stopped.Store(true)
	a.conn.Close()
}

// end stops every session with sig, gives them grace to finish (and send
// their last frames), then kills what is left, cancels pending Tx writes and
// waits for every goroutine.
func (a *server) end(ctx context.Context, sig syscall.Signal, grace time.Duration, err error) error {
	for _, w := range a.writes {
		w.abort()
	}
	a.signalAll(sig)
	if !waitFor(&a.wg, grace) && sig != syscall.SIGKILL {
		a.signalAll(syscall.SIGKILL)
		waitFor(&a.wg, a.opts.OutputGrace)
	}
	// Whatever is still running is blocked on a connection nobody reads
	// or on output a background process holds open: stop the writes;
	// sessions end within OutputGrace of their exit.
	a.stopWrites()
	a.wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// waitFor waits for wg up to d and reports whether it finished.
func waitFor(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// dispatch handles one host frame and reports whether it was core.shutdown.
// The frame is a view into the scanner's buffer: whatever outlives this
// call is copied.
func (a *server) dispatch(f frame.Frame) (shutdown bool) {
	m, err := frame.DecodeFrame(f)
	if err != nil {
		// Unknown garbage inside a well-formed frame: the agent cannot
		// tell which session it was for. A request answers with a
		// failure below; anything else is ignored, as agentd does.
		if f.Flags&frame.FlagSessionStart != 0 {
			a.sendFailed(f.ID, badArgs("undecodable request: "+err.Error()))
		}
		return false
	}
	switch m.Type {
	case frame.TypeShutdown:
		return true
	case frame.TypeExecRequest:
		var req frame.ExecRequest
		if err := m.Into(&req); err != nil {
			a.sendFailed(m.ID, badArgs(err.Error()))
			return false
		}
		a.startSession(m.ID, &req)
	case frame.TypeExecStdin:
		var p frame.ExecStdin
		if m.Into(&p) == nil {
			if s := a.session(m.ID); s != nil {
				s.stdin.push(p.Data) // p.Data is already a copy: Decode does not alias
			}
		}
	case frame.TypeExecSignal:
		var p frame.ExecSignal
		if m.Into(&p) == nil {
			if s := a.session(m.ID); s != nil {
				s.signal(syscall.Signal(p.Signal))
			}
		}
	case frame.TypeExecResize:
		var p frame.ExecResize
		if m.Into(&p) == nil {
			if s := a.session(m.ID); s != nil {
				s.resize(p.Rows, p.Cols)
			}
		}
	case frame.TypeFsRequest:
		var req frame.FsRequest
		if err := m.Into(&req); err != nil {
			a.sendFsError(m.ID, err.Error())
			return false
		}
		a.fsRequest(m.ID, req.Op)
	case frame.TypeFsData:
		var p frame.FsData
		if m.Into(&p) == nil {
			a.fsData(m.ID, p.Data)
		}
	}
	return false
}

func (a *server) session(id uint32) *session {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessions[id]
}

func (a *server) signalAll(sig syscall.Signal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.sessions {
		s.signal(sig)
	}
}

// send encodes and writes one whole frame. Any goroutine; frames never
// interleave and are never dropped: a connection that does not take them
// makes the sender wait. It fails only once the host is gone or the
// connection is being closed.
func (a *server) send(id uint32, t frame.Type, payload any) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	b, err := frame.AppendMessage(a.wbuf[:0], id, t, payload)
	if err != nil {
		return err
	}
	a.wbuf = b
	return a.write(b)
}

func (a *server) sendRaw(b []byte) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	return a.write(b)
}

// errStopped is what a send returns once the connection is being closed.
var errStopped = errors.New("agent: connection closed")

// write puts b on the connection; the caller holds wmu.
func (a *server) write(b []byte) error {
	if a.stopped.Load() {
		return errStopped
	}
	_, err := a.conn.Write(b)
	return err
}

func (a *server) sendFailed(id uint32, f *frame.ExecFailed) {
	a.send(id, frame.TypeExecFailed, f)
}
