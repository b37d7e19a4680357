package guest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/ring"
)

// Warning is what a binary running the builtin guest should log: the Agent
// is a stand-in for the guest agent, not a sandbox.
const Warning = "builtin guest: commands run as host processes with the relay's privileges; it offers no isolation"

// Defaults for AgentOptions.
const (
	DefaultShutdownGrace = 2 * time.Second
	DefaultOutputGrace   = 250 * time.Millisecond
)

// OutputChunk is the largest data a core.exec.stdout, core.exec.stderr or
// core.fs.data frame from the Agent carries.
const OutputChunk = 64 << 10

// AgentOptions configure an Agent. The zero value is ready to use.
type AgentOptions struct {
	// Ready is the core.ready frame sent first; empty means DefaultReady().
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
}

// An Agent is the builtin guest: an in-process stand-in for the guest agent
// (agentd) that speaks the protocol over a ring.Console.
//
// IT RUNS COMMANDS AS HOST PROCESSES, with the privileges of the process
// that runs it, and its file-system operations touch the host's file
// system. It isolates nothing; it exists so that the relay can be run and
// tested without a microVM. Log Warning when using it.
//
// What it does per message:
//
//   - core.exec.request: start the command, answer core.exec.started or
//     core.exec.failed, stream its output, end with core.exec.exited once
//     the process has exited and its output has been streamed.
//   - core.exec.stdin, core.exec.signal, core.exec.resize: deliver to the
//     session with that id; frames for unknown ids are ignored.
//   - core.fs.request: Stat, List, Read, Write, Mkdir, Remove, RemoveDir,
//     Copy, Rename on the host file system. Read streams core.fs.data
//     chunks of up to 1 MiB, then core.fs.response; Write takes
//     core.fs.data chunks until an empty one, then responds. Errors read
//     as Rust's io::Error ("No such file or directory (os error 2)").
//   - core.shutdown: SIGTERM every session, SIGKILL what is left after
//     ShutdownGrace, and stop.
//
// How a command is run:
//
//   - cmd is looked up in the PATH of the command's own environment
//     (execvp rules); args follow it, argv[0] is cmd as given.
//   - The environment is AgentOptions.Env (or DefaultEnv) with the
//     request's entries laid over it, the request winning per key.
//   - cwd defaults to the relay's working directory; a missing or
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
type Agent struct {
	c    *ring.Console
	opts AgentOptions

	stop *stopper // set by Run; fires on ctx end and when Run finishes

	// wmu serialises whole frames into Tx: Tx has one producer at a
	// time, and frames must not interleave. wbuf is the encode buffer.
	wmu  sync.Mutex
	wbuf []byte

	mu       sync.Mutex
	sessions map[uint32]*session

	// writes are fs Write requests awaiting their data; only Run's
	// goroutine touches them.
	writes map[uint32]*fsWrite

	wg sync.WaitGroup // every goroutine the Agent started
}

// NewAgent returns an Agent that will serve c once Run is called.
func NewAgent(c *ring.Console, opts AgentOptions) *Agent {
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = DefaultShutdownGrace
	}
	if opts.OutputGrace <= 0 {
		opts.OutputGrace = DefaultOutputGrace
	}
	return &Agent{
		c:        c,
		opts:     opts,
		sessions: make(map[uint32]*session),
		writes:   make(map[uint32]*fsWrite),
	}
}

// ErrCorruptStream is returned by Run when the host's byte stream does not
// frame: the frame boundary is lost and nothing after it can be trusted.
var ErrCorruptStream = errors.New("guest: corrupt host stream")

// Run sends the ready frame, then serves host frames from Rx until the host
// closes Rx (nil), core.shutdown arrives (nil), or ctx ends (ctx.Err()). On
// the first two, sessions are signalled (SIGKILL for a closed Rx, SIGTERM
// then SIGKILL for shutdown) and Run waits for them; on ctx's end they are
// killed and their remaining frames are not sent. Either way every
// goroutine the Agent started has ended when Run returns, and Run has
// closed Tx for writing and Rx for reading. Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	s, err := newStopper(ctx)
	if err != nil {
		return err
	}
	a.stop = s
	defer s.Close()
	defer a.c.Rx.CloseRead()
	defer a.c.Tx.CloseWrite()

	ready := a.opts.Ready
	if len(ready) == 0 {
		ready = DefaultReady()
	}
	if err := a.sendRaw(ready); err != nil {
		return a.end(ctx, syscall.SIGKILL, 0, err)
	}

	sc := frame.NewScanner(0)
	rx := a.c.Rx
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
				return a.end(ctx, syscall.SIGTERM, a.opts.ShutdownGrace, nil)
			}
		}
		n, err := rx.TryRead(sc.Space())
		sc.Commit(n)
		if n > 0 {
			continue
		}
		if err != nil { // io.EOF: the host closed Rx
			if sc.Buffered() > 0 {
				err = fmt.Errorf("%w: %d bytes of a partial frame at the end", ErrCorruptStream, sc.Buffered())
				return a.end(ctx, syscall.SIGKILL, a.opts.OutputGrace, err)
			}
			return a.end(ctx, syscall.SIGKILL, a.opts.OutputGrace, nil)
		}
		if err := s.waitData(rx); err != nil {
			return a.end(ctx, syscall.SIGKILL, 0, err)
		}
	}
}

// end stops every session with sig, gives them grace to finish (and send
// their last frames), then kills what is left, cancels pending Tx writes and
// waits for every goroutine.
func (a *Agent) end(ctx context.Context, sig syscall.Signal, grace time.Duration, err error) error {
	for _, w := range a.writes {
		w.abort()
	}
	a.signalAll(sig)
	if !waitFor(&a.wg, grace) && sig != syscall.SIGKILL {
		a.signalAll(syscall.SIGKILL)
		waitFor(&a.wg, a.opts.OutputGrace)
	}
	// Whatever is still running is blocked on a Tx nobody reads or on a
	// process that ignores SIGKILL's aftermath (output held open): stop
	// the Tx writes; sessions end within OutputGrace of their exit.
	a.stop.Stop()
	a.wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, errStopped) || errors.Is(err, ring.ErrClosed) {
		return fmt.Errorf("guest: builtin: relay stopped reading the console: %w", ring.ErrClosed)
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
func (a *Agent) dispatch(f frame.Frame) (shutdown bool) {
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

func (a *Agent) session(id uint32) *session {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessions[id]
}

func (a *Agent) signalAll(sig syscall.Signal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.sessions {
		s.signal(sig)
	}
}

// send encodes and writes one whole frame. Any goroutine; frames never
// interleave and are never dropped: a full Tx makes the sender wait. It
// fails only once the relay stopped reading or the Agent is stopping.
func (a *Agent) send(id uint32, t frame.Type, payload any) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	b, err := frame.AppendMessage(a.wbuf[:0], id, t, payload)
	if err != nil {
		return err
	}
	a.wbuf = b
	return a.stop.writeAll(a.c.Tx, b)
}

func (a *Agent) sendRaw(b []byte) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	return a.stop.writeAll(a.c.Tx, b)
}

func (a *Agent) sendFailed(id uint32, f *frame.ExecFailed) {
	a.send(id, frame.TypeExecFailed, f)
}
