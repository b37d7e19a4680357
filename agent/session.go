package agent

import (
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// A session is one running command.
type session struct {
	a   *server
	id  uint32
	tty bool

	cmd      *exec.Cmd
	pid      int
	waitExit func() unix.WaitStatus // from the Reaper

	master  *os.File   // tty mode: the pty master
	outputs []*os.File // stdout then stderr (pipe mode), or the master
	stdin   *inbox

	mu     sync.Mutex
	exited bool // the process has exited: its pid may not be signalled

	// reaped is set once the process is gone; from then on an output
	// read that waits longer than OutputGrace ends the stream.
	reaped atomic.Bool
}

// run starts the session's goroutines: one per output stream, one for
// stdin, and a supervisor that waits for the exit, lets the output drain,
// and sends core.exec.exited last.
func (s *session) run() {
	a := s.a
	var out sync.WaitGroup
	for i, f := range s.outputs {
		t := frame.TypeExecStdout
		if i == 1 {
			t = frame.TypeExecStderr
		}
		out.Add(1)
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer out.Done()
			s.stream(f, t)
		}()
	}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		s.stdin.run()
	}()
	go func() {
		defer a.wg.Done()
		code := s.wait()
		// Output normally ends with the process (EOF on the pipes, EIO
		// on the pty). A background child may hold the streams open; a
		// stream idle for OutputGrace after the exit ends without it.
		s.reaped.Store(true)
		deadline := time.Now().Add(a.opts.OutputGrace)
		for _, f := range s.outputs {
			f.SetReadDeadline(deadline)
		}
		out.Wait()
		s.stdin.close()
		s.closeFiles()
		a.mu.Lock()
		delete(a.sessions, s.id)
		a.mu.Unlock()
		a.send(s.id, frame.TypeExecExited, frame.ExecExited{Code: code})
	}()
}

// stream sends one output stream as frames of at most OutputChunk bytes
// until EOF (EIO for a pty whose terminal side closed), or until it has
// been idle for OutputGrace after the process exited. The grace restarts
// at every read: bytes already in the pipe are streamed however long a
// full Tx makes the sends take.
func (s *session) stream(f *os.File, t frame.Type) {
	buf := make([]byte, OutputChunk)
	for {
		if s.reaped.Load() {
			f.SetReadDeadline(time.Now().Add(s.a.opts.OutputGrace))
		}
		n, err := f.Read(buf)
		if n > 0 {
			// A failed send means the relay is gone; reading on keeps
			// the child from blocking on a full pipe.
			if t == frame.TypeExecStderr {
				s.a.send(s.id, t, frame.ExecStderr{Data: buf[:n]})
			} else {
				s.a.send(s.id, t, frame.ExecStdout{Data: buf[:n]})
			}
		}
		if err != nil {
			return
		}
	}
}

// wait waits for the process to exit and returns its code: the exit
// status, or 128+signal if a signal killed it, as a shell reports it.
func (s *session) wait() int32 {
	ws := s.waitExit()
	// The reaper reaped it; the os.Process only holds a pidfd now.
	s.cmd.Process.Release()
	if ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(ws.ExitStatus())
}

// markExited is called by the reaper while the process is a zombie, before
// it is reaped: from then on signal leaves the pid alone, so it never hits
// a stranger that got the same pid.
func (s *session) markExited() {
	s.mu.Lock()
	s.exited = true
	s.mu.Unlock()
}

// signal sends sig to the session's process group (the command and what it
// started), or to the process alone if the group is gone.
func (s *session) signal(sig syscall.Signal) {
	if sig <= 0 || sig > 64 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exited {
		return
	}
	if unix.Kill(-s.pid, sig) == unix.ESRCH {
		unix.Kill(s.pid, sig)
	}
}

// resize sets the terminal size of a tty session.
func (s *session) resize(rows, cols uint16) {
	if s.master != nil {
		setWinsize(s.master, rows, cols)
	}
}

func (s *session) closeFiles() {
	for _, f := range s.outputs {
		f.Close()
	}
	s.stdin.close()
}

// An inbox delivers a session's stdin: the dispatcher pushes and never
// waits (a command that does not read its stdin must not stall the other
// sessions), a goroutine writes. Empty data is EOF: it closes the pipe, or
// in tty mode types the terminal's EOF character (^D), since closing the
// master would hang up the whole terminal; a terminal takes input after
// that, a pipe does not.
type inbox struct {
	f   *os.File
	tty bool

	wake chan struct{} // capacity 1: something was pushed, or close

	mu     sync.Mutex
	queue  [][]byte // an empty element is EOF
	eof    bool     // pipe mode: EOF was pushed, ignore the rest
	closed bool     // session over
}

func newInbox(f *os.File, tty bool) *inbox {
	return &inbox{f: f, tty: tty, wake: make(chan struct{}, 1)}
}

func (q *inbox) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push queues data, which the caller hands over.
func (q *inbox) push(data []byte) {
	q.mu.Lock()
	if q.closed || q.eof {
		q.mu.Unlock()
		return
	}
	if len(data) == 0 && !q.tty {
		q.eof = true
	}
	q.queue = append(q.queue, data)
	q.mu.Unlock()
	q.signal()
}

// close ends delivery. In pipe mode it also closes the pipe, which
// interrupts a write blocked on a reader that went away; in tty mode the
// session closes the master.
func (q *inbox) close() {
	q.mu.Lock()
	q.closed = true
	q.queue = nil
	q.mu.Unlock()
	if !q.tty {
		q.f.Close()
	}
	q.signal()
}

var eotByte = []byte{4} // ^D, VEOF of a terminal in its default settings

func (q *inbox) run() {
	broken := false // a write failed: the reader is gone, drop the rest
	for range q.wake {
		for {
			q.mu.Lock()
			if q.closed {
				q.mu.Unlock()
				return
			}
			if len(q.queue) == 0 {
				q.mu.Unlock()
				break
			}
			p := q.queue[0]
			q.queue[0] = nil
			q.queue = q.queue[1:]
			q.mu.Unlock()
			switch {
			case len(p) == 0 && !q.tty:
				q.f.Close()
				return
			case len(p) == 0:
				p = eotByte
			}
			if !broken {
				if _, err := q.f.Write(p); err != nil {
					broken = true
				}
			}
		}
	}
}
