package client

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// guestRequest reads the exec request as the guest would.
func guestRequest(p *peer) (uint32, frame.ExecRequest, bool) {
	var req frame.ExecRequest
	m, ok := p.expect(frame.TypeExecRequest, &req)
	return m.ID, req, ok
}

func TestExecStdinStdoutStderr(t *testing.T) {
	r := newFakeRelay(t, handshake(3, readyVector))
	c := connect(t, r)
	p := r.accept(t)

	// More than two chunks, with a recognisable pattern.
	in := make([]byte, 2*StdinChunk+1000)
	for i := range in {
		in[i] = byte(i % 251)
	}
	type result struct {
		req    frame.ExecRequest
		id     uint32
		stdin  []byte
		chunks []int
	}
	got := make(chan result, 1)
	go func() {
		var res result
		defer func() { got <- res }()
		id, req, ok := guestRequest(p)
		if !ok {
			return
		}
		res.id, res.req = id, req
		p.send(id, frame.TypeExecStarted, &frame.ExecStarted{Pid: 42})
		for {
			var d frame.ExecStdin
			m, ok := p.expect(frame.TypeExecStdin, &d)
			if !ok {
				return
			}
			if m.ID != id {
				t.Errorf("stdin under id %d, want %d", m.ID, id)
			}
			res.chunks = append(res.chunks, len(d.Data))
			if len(d.Data) == 0 {
				break
			}
			res.stdin = append(res.stdin, d.Data...)
		}
		p.send(id, frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("out1 ")})
		p.send(id, frame.TypeExecStderr, &frame.ExecStderr{Data: []byte("err1 ")})
		p.send(id, frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("out2")})
		p.send(id, frame.TypeExecStderr, &frame.ExecStderr{Data: []byte("err2")})
		p.send(id, frame.TypeExecExited, &frame.ExecExited{Code: 3})
	}()

	var stdout, stderr bytes.Buffer
	var startedID, startedPid uint32
	code, err := c.Exec(testCtx(t), ExecOptions{
		Cmd: "/bin/cat", Args: []string{"-u"}, Env: []string{"A=1"}, Cwd: "/tmp",
		Stdin: bytes.NewReader(in), Stdout: &stdout, Stderr: &stderr,
		Started: func(id, pid uint32) { startedID, startedPid = id, pid },
	})
	if err != nil {
		t.Fatal(err)
	}
	res := <-got
	if code != 3 {
		t.Errorf("code %d, want 3", code)
	}
	if stdout.String() != "out1 out2" || stderr.String() != "err1 err2" {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	start, end := c.Range()
	if res.id <= start || res.id >= end {
		t.Errorf("session id %d outside the slot's range", res.id)
	}
	if startedID != res.id || startedPid != 42 {
		t.Errorf("Started(%d, %d), want (%d, 42)", startedID, startedPid, res.id)
	}
	q := res.req
	if q.Cmd != "/bin/cat" || len(q.Args) != 1 || q.Args[0] != "-u" || len(q.Env) != 1 || q.Env[0] != "A=1" ||
		q.Cwd == nil || *q.Cwd != "/tmp" || q.User != nil || q.TTY || q.Rows != 24 || q.Cols != 80 {
		t.Errorf("request %+v", q)
	}
	if !bytes.Equal(res.stdin, in) {
		t.Errorf("guest got %d stdin bytes, not the %d sent", len(res.stdin), len(in))
	}
	for _, n := range res.chunks {
		if n > StdinChunk {
			t.Errorf("stdin chunk of %d bytes, limit %d", n, StdinChunk)
		}
	}
	if n := len(res.chunks); n < 4 || res.chunks[n-1] != 0 {
		t.Errorf("stdin chunks %v: want at least 3 data chunks and a final empty (EOF) one", res.chunks)
	}
}

func TestExecTTYAndNilStdin(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	go func() {
		id, req, ok := guestRequest(p)
		if !ok {
			return
		}
		if !req.TTY || req.Rows != 50 || req.Cols != 132 || req.User == nil || *req.User != "nobody" {
			t.Errorf("request %+v", req)
		}
		p.send(id, frame.TypeExecStarted, &frame.ExecStarted{Pid: 1})
		var d frame.ExecStdin
		if _, ok := p.expect(frame.TypeExecStdin, &d); ok && len(d.Data) != 0 {
			t.Errorf("nil Stdin sent %q, want an immediate EOF", d.Data)
		}
		p.send(id, frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("merged")})
		p.send(id, frame.TypeExecExited, &frame.ExecExited{Code: 0})
	}()
	var out bytes.Buffer
	code, err := c.Exec(testCtx(t), ExecOptions{Cmd: "sh", TTY: true, Rows: 50, Cols: 132, User: "nobody", Stdout: &out})
	if err != nil || code != 0 || out.String() != "merged" {
		t.Fatalf("Exec = %d, %v; stdout %q", code, err, out.String())
	}
}

func TestExecFailed(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	errno, name, stage := int32(2), "ENOENT", "execvp"
	go func() {
		id, _, ok := guestRequest(p)
		if !ok {
			return
		}
		p.send(id, frame.TypeExecFailed, &frame.ExecFailed{
			Kind: frame.FailNotFound, Errno: &errno, ErrnoName: &name,
			Message: "command not found: nosuchcmd", Stage: &stage,
		})
	}()
	code, err := c.Exec(testCtx(t), ExecOptions{Cmd: "nosuchcmd"})
	var fe *ExecFailedError
	if !errors.As(err, &fe) {
		t.Fatalf("Exec = %d, %v; want an *ExecFailedError", code, err)
	}
	if code != -1 {
		t.Errorf("code %d, want -1", code)
	}
	want := `client: exec "nosuchcmd" failed: not_found: command not found: nosuchcmd (stage execvp, errno 2 ENOENT)`
	if err.Error() != want {
		t.Errorf("Error()\n got %s\nwant %s", err, want)
	}
	if fe.Kind != frame.FailNotFound || fe.Cmd != "nosuchcmd" {
		t.Errorf("%+v", fe)
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("errors.Is(err, ENOENT) = false")
	}
}

func TestExecFailedWithoutErrno(t *testing.T) {
	e := &ExecFailedError{Cmd: "x", ExecFailed: frame.ExecFailed{Kind: frame.FailPermissionDenied, Message: "permission denied"}}
	if want := `client: exec "x" failed: permission_denied: permission denied`; e.Error() != want {
		t.Errorf("got %s, want %s", e, want)
	}
	if e.Unwrap() != nil {
		t.Errorf("Unwrap() = %v without an errno", e.Unwrap())
	}
	minus1 := int32(-1)
	e.Errno = &minus1
	if e.Unwrap() != nil || !strings.HasSuffix(e.Error(), "(errno -1)") {
		t.Errorf("errno -1: %s, Unwrap %v", e, e.Unwrap())
	}
}

func TestExecCancelSendsSIGKILL(t *testing.T) {
	r := newFakeRelay(t, handshake(5, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signalled := make(chan uint32, 1)
	sessionc := make(chan uint32, 1)
	go func() {
		id, _, ok := guestRequest(p)
		if !ok {
			return
		}
		sessionc <- id
		p.send(id, frame.TypeExecStarted, &frame.ExecStarted{Pid: 7})
		if _, ok := p.expect(frame.TypeExecStdin, nil); !ok { // the nil Stdin's EOF
			return
		}
		p.send(id, frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("tick")})
		var sig frame.ExecSignal
		m, ok := p.expect(frame.TypeExecSignal, &sig)
		if !ok {
			return
		}
		if sig.Signal != 9 {
			t.Errorf("signal %d, want 9", sig.Signal)
		}
		signalled <- m.ID
	}()
	out := writerFunc(func(b []byte) (int, error) {
		cancel() // the process is running: give up on it
		return len(b), nil
	})
	code, err := c.Exec(ctx, ExecOptions{Cmd: "sleep", Args: []string{"1000"}, Stdout: out})
	if !errors.Is(err, context.Canceled) || err != context.Canceled || code != -1 {
		t.Fatalf("Exec = %d, %v; want -1, context.Canceled", code, err)
	}
	select {
	case id := <-signalled:
		if want := <-sessionc; id != want {
			t.Fatalf("SIGKILL under id %d, want the session id %d", id, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no core.exec.signal after cancel")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestExecWriterErrorKeepsCode(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	go func() {
		id, _, ok := guestRequest(p)
		if !ok {
			return
		}
		p.send(id, frame.TypeExecStarted, &frame.ExecStarted{Pid: 1})
		p.send(id, frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("a")})
		p.send(id, frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("b")})
		p.send(id, frame.TypeExecExited, &frame.ExecExited{Code: 0})
	}()
	broken := errors.New("disk full")
	calls := 0
	w := writerFunc(func(b []byte) (int, error) { calls++; return 0, broken })
	code, err := c.Exec(testCtx(t), ExecOptions{Cmd: "x", Stdout: w})
	if code != 0 || !errors.Is(err, broken) || calls != 1 {
		t.Fatalf("Exec = %d, %v after %d writes; want 0, disk full, 1 write", code, err, calls)
	}
}

func TestExecConnectionLost(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	go func() {
		id, _, ok := guestRequest(p)
		if !ok {
			return
		}
		p.send(id, frame.TypeExecStarted, &frame.ExecStarted{Pid: 1})
		// Read the nil Stdin's EOF first: closing with unread bytes would
		// reset the connection instead of ending it.
		p.expect(frame.TypeExecStdin, nil)
		p.nc.Close()
	}()
	code, err := c.Exec(testCtx(t), ExecOptions{Cmd: "x"})
	if code != -1 || !errors.Is(err, ErrDisconnected) || !strings.Contains(err.Error(), `exec "x"`) {
		t.Fatalf("Exec = %d, %v", code, err)
	}
	// The connection's error inside the exec's: the prefix once.
	if want := `client: exec "x" (id 1): relay closed the connection`; err.Error() != want {
		t.Fatalf("Exec error %q, want %q", err, want)
	}
	// A send on the closed Conn: the sentinel inside, the prefix once.
	c.Close()
	err = c.Signal(1, 15)
	if !errors.Is(err, ErrClosed) || strings.Count(err.Error(), "client:") != 1 {
		t.Fatalf("Signal after Close: %q", err)
	}
}

// TestExecRefusesInvalidUTF8: strings that CBOR text cannot carry are
// refused before anything is sent, naming which one.
func TestExecRefusesInvalidUTF8(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	for _, tc := range []struct {
		o    ExecOptions
		want string
	}{
		{ExecOptions{Cmd: "a\xff"}, `client: exec: the command is not valid UTF-8: "a\xff"`},
		{ExecOptions{Cmd: "sh", Args: []string{"-c", "\xfe"}}, `client: exec: argument 2 is not valid UTF-8: "\xfe"`},
		{ExecOptions{Cmd: "sh", Env: []string{"A=\xc3"}}, `client: exec: environment entry is not valid UTF-8: "A=\xc3"`},
		{ExecOptions{Cmd: "sh", Cwd: "/\x80"}, `client: exec: the working directory is not valid UTF-8: "/\x80"`},
		{ExecOptions{Cmd: "sh", User: "\xff"}, `client: exec: the user is not valid UTF-8: "\xff"`},
	} {
		code, err := c.Exec(testCtx(t), tc.o)
		if code != -1 || err == nil || err.Error() != tc.want {
			t.Errorf("Exec(%q) = %d, %v; want %s", tc.o.Cmd, code, err, tc.want)
		}
	}
	// Nothing reached the relay: the next frame it reads is this one.
	c.Signal(7, 15)
	if m, ok := p.expect(frame.TypeExecSignal, nil); !ok || m.ID != 7 {
		t.Fatalf("the relay got id %d first: an invalid request went out", m.ID)
	}
}

func TestSignalResizeShutdown(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	if err := c.Signal(11, 15); err != nil {
		t.Fatal(err)
	}
	if err := c.Resize(11, 40, 120); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	var sig frame.ExecSignal
	if m, ok := p.expect(frame.TypeExecSignal, &sig); !ok || m.ID != 11 || sig.Signal != 15 {
		t.Errorf("signal %+v %+v", m, sig)
	}
	var rs frame.ExecResize
	if m, ok := p.expect(frame.TypeExecResize, &rs); !ok || m.ID != 11 || rs != (frame.ExecResize{Rows: 40, Cols: 120}) {
		t.Errorf("resize %+v %+v", m, rs)
	}
	if m, ok := p.expect(frame.TypeShutdown, nil); !ok || m.ID != 0 || m.Flags != frame.FlagShutdown || len(m.Payload) != 0 {
		t.Errorf("shutdown %+v", m)
	}
}
