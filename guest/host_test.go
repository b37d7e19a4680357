package guest

import (
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/agent"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/ring"
)

// testHost plays the relay's side of a console: it consumes Tx into
// decoded messages and produces Rx.
type testHost struct {
	t    *testing.T
	c    *ring.Console
	msgs chan frame.Message
	err  chan error // the reader's end: nil for Tx EOF

	start func() // starts the reader, once
}

func newConsole(t *testing.T, capacity int) *ring.Console {
	t.Helper()
	c, err := ring.NewConsole(capacity)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newTestHost starts reading Tx. The console is closed at cleanup, after
// the reader is done; tests end the guest first.
func newTestHost(t *testing.T, capacity int) *testHost {
	t.Helper()
	h := newPausedHost(t, capacity)
	h.start()
	return h
}

// newPausedHost is newTestHost whose reader starts at start: until then
// the guest's writes pile up in Tx.
func newPausedHost(t *testing.T, capacity int) *testHost {
	t.Helper()
	h := &testHost{t: t, c: newConsole(t, capacity), msgs: make(chan frame.Message, 4096), err: make(chan error, 1)}
	h.start = sync.OnceFunc(func() { go h.read() })
	t.Cleanup(func() {
		h.start()
		h.c.Tx.CloseRead() // unblocks a guest still writing
		h.c.Rx.CloseWrite()
		select {
		case <-h.err:
		case <-time.After(10 * time.Second):
			t.Error("host reader did not end")
			return
		}
		h.c.Close()
	})
	return h
}

func (h *testHost) read() {
	sc := frame.NewScanner(0)
	defer close(h.msgs)
	for {
		n, err := h.c.Tx.Read(sc.Space(), time.Time{})
		sc.Commit(n)
		for {
			f, ferr := sc.Next()
			if ferr == frame.ErrIncomplete {
				break
			}
			if ferr != nil {
				h.err <- ferr
				return
			}
			m, derr := frame.DecodeFrame(f)
			if derr != nil {
				h.err <- derr
				return
			}
			h.msgs <- m
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			h.err <- err
			return
		}
	}
}

func (h *testHost) send(id uint32, typ frame.Type, payload any) {
	h.t.Helper()
	b, err := frame.AppendMessage(nil, id, typ, payload)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.c.Rx.WriteAll(b, time.Now().Add(10*time.Second)); err != nil {
		h.t.Fatalf("send %v: %v", typ, err)
	}
}

// next returns the next guest message, failing the test after timeout.
func (h *testHost) next(timeout time.Duration) frame.Message {
	h.t.Helper()
	select {
	case m, ok := <-h.msgs:
		if !ok {
			h.t.Fatal("guest stream ended")
		}
		return m
	case <-time.After(timeout):
		h.t.Fatal("no message from the guest")
	}
	panic("unreachable")
}

func (h *testHost) expectReady() {
	h.t.Helper()
	m := h.next(5 * time.Second)
	if m.Type != frame.TypeReady || m.ID != 0 || m.Flags != 0 {
		h.t.Fatalf("first message: %v id %d flags %d, want core.ready", m.TypeName, m.ID, m.Flags)
	}
	var r frame.Ready
	if err := m.Into(&r); err != nil {
		h.t.Fatal(err)
	}
}

// result is what an exec session produced.
type result struct {
	started *frame.ExecStarted
	failed  *frame.ExecFailed
	stdout  []byte
	stderr  []byte
	code    *int32
}

// collect reads the messages of session id until its terminal one. Messages
// of other ids fail the test.
func (h *testHost) collect(id uint32, timeout time.Duration) result {
	h.t.Helper()
	var r result
	deadline := time.Now().Add(timeout)
	for {
		m := h.next(time.Until(deadline))
		if m.ID != id {
			h.t.Fatalf("message %v for id %d, want id %d", m.TypeName, m.ID, id)
		}
		switch m.Type {
		case frame.TypeExecStarted:
			if r.started != nil {
				h.t.Fatal("two core.exec.started")
			}
			r.started = new(frame.ExecStarted)
			mustInto(h.t, m, r.started)
		case frame.TypeExecStdout, frame.TypeExecStderr:
			if r.started == nil {
				h.t.Fatalf("%v before core.exec.started", m.TypeName)
			}
			var p frame.ExecStdout
			mustInto(h.t, m, &p)
			if len(p.Data) > agent.OutputChunk {
				h.t.Fatalf("%d-byte output chunk", len(p.Data))
			}
			if m.Type == frame.TypeExecStdout {
				r.stdout = append(r.stdout, p.Data...)
			} else {
				r.stderr = append(r.stderr, p.Data...)
			}
		case frame.TypeExecExited:
			if m.Flags != frame.FlagTerminal {
				h.t.Fatalf("core.exec.exited flags %#x", m.Flags)
			}
			var p frame.ExecExited
			mustInto(h.t, m, &p)
			r.code = &p.Code
			return r
		case frame.TypeExecFailed:
			if m.Flags != frame.FlagTerminal {
				h.t.Fatalf("core.exec.failed flags %#x", m.Flags)
			}
			r.failed = new(frame.ExecFailed)
			mustInto(h.t, m, r.failed)
			return r
		default:
			h.t.Fatalf("unexpected %v", m.TypeName)
		}
	}
}

func mustInto(t *testing.T, m frame.Message, v any) {
	t.Helper()
	if err := m.Into(v); err != nil {
		t.Fatal(err)
	}
}
