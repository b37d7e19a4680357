package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// TestConcurrentRequests runs many Requests at once on one Conn while the
// guest answers them interleaved, in an order unrelated to the requests';
// every Stream must see exactly its own frames, in order.
func TestConcurrentRequests(t *testing.T) {
	r := newFakeRelay(t, handshake(4, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	const n, chunks = 24, 20

	go func() {
		var ids []uint32
		for range n {
			m, ok := p.expect(frame.TypeExecRequest, nil)
			if !ok {
				return
			}
			ids = append(ids, m.ID)
		}
		// Round-robin, reversed: the last requester hears first.
		for k := range chunks {
			for i := len(ids) - 1; i >= 0; i-- {
				p.send(ids[i], frame.TypeExecStdout, &frame.ExecStdout{Data: fmt.Appendf(nil, "%d:%d;", ids[i], k)})
			}
		}
		for _, id := range ids {
			p.send(id, frame.TypeExecExited, &frame.ExecExited{Code: int32(id % 100)})
		}
	}()

	ctx := testCtx(t)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			s, err := c.Request(ctx, frame.TypeExecRequest, &frame.ExecRequest{Cmd: "x"})
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			var want bytes.Buffer
			for k := range chunks {
				fmt.Fprintf(&want, "%d:%d;", s.ID(), k)
			}
			var got bytes.Buffer
			for {
				m, err := s.Recv(ctx)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Errorf("id %d: %v", s.ID(), err)
					return
				}
				if m.ID != s.ID() {
					t.Errorf("stream %d got a frame for id %d", s.ID(), m.ID)
				}
				switch m.Type {
				case frame.TypeExecStdout:
					var d frame.ExecStdout
					m.Into(&d)
					got.Write(d.Data)
				case frame.TypeExecExited:
					var e frame.ExecExited
					m.Into(&e)
					if e.Code != int32(s.ID()%100) {
						t.Errorf("id %d: exit code %d", s.ID(), e.Code)
					}
				}
			}
			if got.String() != want.String() {
				t.Errorf("id %d: got %q\nwant %q", s.ID(), got.String(), want.String())
			}
			// After the TERMINAL frame the Stream stays ended.
			if _, err := s.Recv(ctx); err != io.EOF {
				t.Errorf("id %d: Recv after the end: %v", s.ID(), err)
			}
		})
	}
	wg.Wait()
	if d := c.Dropped(); d != 0 {
		t.Errorf("%d frames dropped", d)
	}
}

func TestUnknownIDsDropped(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	s := c.Subscribe(c.NextID())
	p.send(999, frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("nobody's")})
	p.send(0, frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("id 0")})
	p.send(s.ID(), frame.TypeExecExited, &frame.ExecExited{Code: 1})
	// A frame for the id after its TERMINAL frame has nobody to go to.
	p.send(s.ID(), frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("late")})
	ctx := testCtx(t)
	m, err := s.Recv(ctx)
	if err != nil || m.Type != frame.TypeExecExited {
		t.Fatalf("Recv = %+v, %v", m, err)
	}
	if _, err := s.Recv(ctx); err != io.EOF {
		t.Fatalf("Recv after exited: %v, want io.EOF", err)
	}
	waitFor(t, func() bool { return c.Dropped() == 3 }, "3 dropped frames")
}

func TestSubscribeTwice(t *testing.T) {
	c := connect(t, newFakeRelay(t, handshake(0, readyVector)))
	a := c.Subscribe(5)
	b := c.Subscribe(5)
	if _, err := b.Recv(testCtx(t)); err == nil {
		t.Fatal("second Subscribe to a live id: Recv succeeded")
	}
	a.Close()
	d := c.Subscribe(5)
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := d.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Subscribe after Close: Recv %v, want a live stream", err)
	}
}

func TestStreamClose(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	s := c.Subscribe(1)
	p.send(1, frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("a")})
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(s.q) == 1 }, "a queued frame")
	s.Close()
	if _, err := s.Recv(testCtx(t)); err == nil {
		t.Fatal("Recv on a closed stream succeeded")
	}
	p.send(1, frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("b")})
	waitFor(t, func() bool { return c.Dropped() == 1 }, "the frame after Close dropped")
}

// TestBackPressure: a Stream whose consumer does not read makes the reader
// wait, and with it every Stream of the Conn; nothing is lost, and once the
// consumer reads, everything arrives in order.
func TestBackPressure(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	slow := c.Subscribe(1)
	fast := c.Subscribe(2)

	chunk := bytes.Repeat([]byte{'x'}, 32<<10)
	const frames = 3 * StreamBuffer / (32 << 10) // three buffers' worth
	go func() {
		for i := range frames {
			chunk := append([]byte(nil), chunk...)
			chunk[0] = byte(i)
			p.send(1, frame.TypeExecStdout, &frame.ExecStdout{Data: chunk})
		}
		p.send(2, frame.TypeExecExited, &frame.ExecExited{Code: 0})
		p.send(1, frame.TypeExecExited, &frame.ExecExited{Code: 0})
	}()

	// The reader fills slow's buffer and then waits: fast's frame, behind
	// slow's, cannot arrive.
	waitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slow.qBytes+len(chunk)+100 > StreamBuffer
	}, "slow's buffer full")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := fast.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fast.Recv while slow is full: %v, want a wait", err)
	}
	c.mu.Lock()
	if slow.qBytes > StreamBuffer {
		t.Errorf("slow holds %d bytes, limit %d", slow.qBytes, StreamBuffer)
	}
	c.mu.Unlock()

	// Drain slow: everything arrives, in order, then fast gets its frame.
	ctx = testCtx(t)
	for i := range frames {
		m, err := slow.Recv(ctx)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		var d frame.ExecStdout
		if err := m.Into(&d); err != nil || len(d.Data) != len(chunk) || d.Data[0] != byte(i) {
			t.Fatalf("frame %d out of order or damaged (%d bytes, first %d)", i, len(d.Data), d.Data[0])
		}
	}
	if m, err := fast.Recv(ctx); err != nil || m.Type != frame.TypeExecExited {
		t.Fatalf("fast.Recv after the drain: %+v, %v", m, err)
	}
	if m, err := slow.Recv(ctx); err != nil || m.Type != frame.TypeExecExited {
		t.Fatalf("slow's exit: %+v, %v", m, err)
	}
	if c.Dropped() != 0 {
		t.Fatalf("%d frames dropped under back-pressure", c.Dropped())
	}
}

// A frame bigger than StreamBuffer still gets through an empty Stream.
func TestFrameLargerThanStreamBuffer(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	s := c.Subscribe(1)
	big := bytes.Repeat([]byte("0123456789abcdef"), (StreamBuffer+4096)/16)
	go p.send(1, frame.TypeExecStdout, &frame.ExecStdout{Data: big})
	m, err := s.Recv(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	var d frame.ExecStdout
	if err := m.Into(&d); err != nil || !bytes.Equal(d.Data, big) {
		t.Fatalf("got %d bytes, %v", len(d.Data), err)
	}
}

// Close while the reader waits on a full Stream must not hang, and must end
// that Stream even though its TERMINAL frame took it out of the routing map.
func TestCloseUnderBackPressure(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	s := c.Subscribe(1)
	// Fill the buffer to 10 bytes short of StreamBuffer, so that the small
	// TERMINAL frame is the one the reader waits with.
	stdout := func(n int) []byte {
		b, _ := frame.AppendMessage(nil, 1, frame.TypeExecStdout, &frame.ExecStdout{Data: make([]byte, n)})
		return b
	}
	var fill []byte
	for len(fill)+(70<<10) < StreamBuffer {
		fill = append(fill, stdout(64<<10)...)
	}
	rest := StreamBuffer - 10 - len(fill)
	for d := rest; d > 0; d-- {
		if f := stdout(d); len(f) == rest {
			fill = append(fill, f...)
			break
		}
	}
	if len(fill) != StreamBuffer-10 {
		t.Fatalf("could not fill the buffer exactly: %d", len(fill))
	}
	p.write(fill)
	p.send(1, frame.TypeExecExited, &frame.ExecExited{Code: 0})
	waitFor(t, func() bool { return c.live.Load() == 0 }, "the TERMINAL frame read")
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung while the reader waited for room")
	}
	ctx := testCtx(t)
	var err error
	for err == nil {
		_, err = s.Recv(ctx)
	}
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("Stream end after Close: %v, want ErrClosed", err)
	}
}

func TestRecvContext(t *testing.T) {
	c := connect(t, newFakeRelay(t, handshake(0, readyVector)))
	s := c.Subscribe(c.NextID())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Recv(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv with a cancelled ctx: %v", err)
	}
	if _, err := c.Request(ctx, frame.TypeExecRequest, &frame.ExecRequest{Cmd: "x"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Request with a cancelled ctx: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
