package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

func connect(t testing.TB, r *fakeRelay) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, r.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialSlots(t *testing.T) {
	for _, slot := range []uint32{0, 3, 15} {
		r := newFakeRelay(t, handshake(slot, readyVector))
		c := connect(t, r)
		if c.Slot() != int(slot) {
			t.Errorf("slot %d: Slot() = %d", slot, c.Slot())
		}
		start, end := c.Range()
		if start != slot*268435455 || end != start+268435455 {
			t.Errorf("slot %d: Range() = [%d, %d)", slot, start, end)
		}
		if c.Ready() != readyVectorPayload {
			t.Errorf("slot %d: Ready() = %+v, want %+v", slot, c.Ready(), readyVectorPayload)
		}
		if !bytes.Equal(c.ReadyFrame(), readyVector) {
			t.Errorf("slot %d: ReadyFrame() = %x, want the bytes the relay sent", slot, c.ReadyFrame())
		}
	}
}

func TestSlot3Range(t *testing.T) {
	c := connect(t, newFakeRelay(t, handshake(3, readyVector)))
	start, end := c.Range()
	if start != 805306365 || end != 1073741820 {
		t.Fatalf("Range() = [%d, %d), want [805306365, 1073741820)", start, end)
	}
	if id := c.NextID(); id != 805306366 {
		t.Fatalf("first id %d, want 805306366", id)
	}
}

// TestNextIDWraps checks ids stay inside (start, start+Step), never 0, and
// wrap back to start+1 after start+Step-1.
func TestNextIDWraps(t *testing.T) {
	for _, slot := range []uint32{0, 3, 15} {
		c := connect(t, newFakeRelay(t, handshake(slot, readyVector)))
		start, end := c.Range()
		if id := c.NextID(); id != start+1 || id == 0 {
			t.Fatalf("slot %d: first id %d, want %d", slot, id, start+1)
		}
		// Jump to just before the end of the range.
		c.next.Store(uint64(frame.Step) - 4)
		var got []uint32
		for range 6 {
			got = append(got, c.NextID())
		}
		want := []uint32{end - 3, end - 2, end - 1, start + 1, start + 2, start + 3}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("slot %d: ids around the wrap %v, want %v", slot, got, want)
			}
		}
		// Many laps later, still inside.
		c.next.Store(7*uint64(frame.Step-1) - 1)
		for range 3 {
			if id := c.NextID(); id <= start || id >= end || id == 0 {
				t.Fatalf("slot %d: id %d outside (%d, %d)", slot, id, start, end)
			}
		}
	}
}

func TestNextIDConcurrentUnique(t *testing.T) {
	c := connect(t, newFakeRelay(t, handshake(2, readyVector)))
	start, end := c.Range()
	const workers, each = 8, 2000
	ids := make(chan uint32, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				ids <- c.NextID()
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := make(map[uint32]bool)
	for id := range ids {
		if id <= start || id >= end {
			t.Fatalf("id %d outside (%d, %d)", id, start, end)
		}
		if seen[id] {
			t.Fatalf("id %d handed out twice", id)
		}
		seen[id] = true
	}
}

func TestNextIDSkipsLiveStreams(t *testing.T) {
	c := connect(t, newFakeRelay(t, handshake(0, readyVector)))
	held := c.Subscribe(2) // what the second NextID would return
	if id := c.NextID(); id != 1 {
		t.Fatalf("first id %d", id)
	}
	if id := c.NextID(); id != 3 {
		t.Fatalf("NextID returned %d while id 2 has a live stream, want 3", id)
	}
	// After a wrap, a released id is handed out again.
	held.Close()
	c.next.Store(uint64(frame.Step - 1))
	if id := c.NextID(); id != 1 {
		t.Fatalf("after wrap: %d, want 1", id)
	}
	c.next.Store(uint64(frame.Step - 1 + 1))
	if id := c.NextID(); id != 2 {
		t.Fatalf("released id not reused: %d, want 2", id)
	}
}

func TestDialRejectsBadHandshake(t *testing.T) {
	off := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	notReady, _ := frame.AppendMessage(nil, 0, frame.TypeExecStarted, &frame.ExecStarted{Pid: 1})
	tooLarge := binary.BigEndian.AppendUint32(off(0), frame.MaxLen+1)
	tooShort := binary.BigEndian.AppendUint32(off(0), 4)
	for _, tc := range []struct {
		name, want string
		hs         []byte
	}{
		{"short offset", "reading id offset", []byte{0, 0}},
		{"offset off a slot boundary", "not a slot boundary", append(off(5), readyVector...)},
		{"offset past slot 15", "not a slot boundary", append(off(16*frame.Step), readyVector...)},
		{"no ready frame", "relay closed the connection", off(0)},
		{"truncated ready frame", "mid-frame (40 of 86 bytes)", append(off(0), readyVector[:40]...)},
		{"ready frame too large", "too large", tooLarge},
		{"ready frame too short", "too short", tooShort},
		{"not core.ready", `got "core.exec.started"`, append(off(0), notReady...)},
		{"garbage body", "decoding core.ready", append(off(0), frame.AppendFrame(nil, 0, 0, []byte{0xff, 0x00})...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFakeRelay(t, tc.hs)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			go func() { // close after the handshake bytes: a truncated handshake must end, not hang
				p := r.accept(t)
				p.nc.Close()
			}()
			c, err := Dial(ctx, r.path)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "client: handshake") {
				t.Fatalf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

// TestDialClosedBeforeHandshake: a relay that closes the connection without
// a byte (no slot, uid refused) and one that exits with the connection
// still in its listen backlog (guest never ready: the kernel resets it)
// both give ErrClosedBeforeHandshake, whose message says what it means.
func TestDialClosedBeforeHandshake(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	r := newFakeRelay(t, nil)
	go func() { r.accept(t).nc.Close() }()
	_, err := Dial(ctx, r.path)
	if !errors.Is(err, ErrClosedBeforeHandshake) {
		t.Fatalf("closed at once: err %v, want ErrClosedBeforeHandshake", err)
	}
	want := "client: the relay closed the connection before the handshake: all 16 client slots busy"
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "(see the relay's log)") {
		t.Fatalf("message %q", err)
	}

	path := filepath.Join(t.TempDir(), "backlog.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond) // Dial is in the backlog, reading
		ln.Close()
	}()
	_, err = Dial(ctx, path)
	if !errors.Is(err, ErrClosedBeforeHandshake) {
		t.Fatalf("reset in the backlog: err %v, want ErrClosedBeforeHandshake", err)
	}

	// Closing after part of the offset is a broken handshake, not a refusal.
	r = newFakeRelay(t, []byte{0, 0})
	go func() { r.accept(t).nc.Close() }()
	if _, err = Dial(ctx, r.path); errors.Is(err, ErrClosedBeforeHandshake) || !strings.Contains(err.Error(), "reading id offset") {
		t.Fatalf("short offset: err %v", err)
	}
}

func TestDialDeadline(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector[:20])) // then silence
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err := Dial(ctx, r.path)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("Dial took %v past a 200ms deadline", d)
	}
}

func TestDialCancelWithoutDeadline(t *testing.T) {
	r := newFakeRelay(t, nil) // never says anything
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := Dial(ctx, r.path)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// A connection that was handshaken within a deadline must not keep it.
func TestDialClearsDeadline(t *testing.T) {
	r := newFakeRelay(t, handshake(1, readyVector))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c, err := Dial(ctx, r.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := r.accept(t)
	s := c.Subscribe(c.NextID())
	time.Sleep(500 * time.Millisecond)
	p.send(s.ID(), frame.TypeExecStarted, &frame.ExecStarted{Pid: 9})
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	if _, err := s.Recv(rctx); err != nil {
		t.Fatalf("Recv after the dial deadline passed: %v", err)
	}
}

func TestRawConn(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialRaw(ctx, r.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p := r.accept(t)

	if _, err := c.Subscribe(1).Recv(ctx); !errors.Is(err, errRaw) {
		t.Errorf("Subscribe on a raw conn: Recv err %v", err)
	}
	if _, err := c.Exec(ctx, ExecOptions{Cmd: "true"}); !errors.Is(err, errRaw) {
		t.Errorf("Exec on a raw conn: err %v", err)
	}

	// Two frames in one write, read back one by one into a small buffer.
	a, _ := frame.AppendMessage(nil, 7, frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("hi")})
	b, _ := frame.AppendMessage(nil, 7, frame.TypeExecExited, &frame.ExecExited{Code: 4})
	p.write(append(a, b...))
	buf := make([]byte, 0, 8)
	f, err := c.ReadFrame(buf)
	if err != nil || f.ID != 7 || !bytes.Equal(f.Raw, a) {
		t.Fatalf("ReadFrame = %+v, %v", f, err)
	}
	f, err = c.ReadFrame(make([]byte, 0, 1024))
	if err != nil || f.Flags != frame.FlagTerminal || !bytes.Equal(f.Raw, b) {
		t.Fatalf("ReadFrame = %+v, %v", f, err)
	}

	if err := c.WriteFrame(a); err != nil {
		t.Fatal(err)
	}
	var out frame.ExecStdout
	if m, ok := p.expect(frame.TypeExecStdout, &out); !ok || m.ID != 7 || string(out.Data) != "hi" {
		t.Fatalf("relay got %+v %q", m, out.Data)
	}

	c.Close()
	if _, err := c.ReadFrame(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadFrame after Close: %v", err)
	}
}

func TestReadFrameNeedsRaw(t *testing.T) {
	c := connect(t, newFakeRelay(t, handshake(0, readyVector)))
	if _, err := c.ReadFrame(nil); !errors.Is(err, errDemux) {
		t.Fatalf("ReadFrame on a demultiplexed conn: %v", err)
	}
}

func TestServerClosesMidFrame(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	s := c.Subscribe(c.NextID())
	out, _ := frame.AppendMessage(nil, s.ID(), frame.TypeExecStdout, &frame.ExecStdout{Data: []byte("partial")})
	p.write(out[:12])
	p.nc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.Recv(ctx)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Recv err %v, want io.ErrUnexpectedEOF", err)
	}
	want := "client: connection lost mid-frame (12 of " // the rest depends on the encoder
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Recv err %q, want it to start with %q", err, want)
	}
	<-c.Done()
	if c.Err() == nil || c.Err().Error() != err.Error() {
		t.Fatalf("Conn.Err() = %v, want %v", c.Err(), err)
	}
	// Streams made after the end fail the same way.
	if _, err := c.Subscribe(c.NextID()).Recv(ctx); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Recv on a late stream: %v", err)
	}
}

func TestServerClosesBetweenFrames(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	s := c.Subscribe(c.NextID())
	p.nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.Recv(ctx)
	if !errors.Is(err, ErrDisconnected) || errors.Is(err, io.EOF) || err.Error() != "client: relay closed the connection" {
		t.Fatalf("Recv err %q", err)
	}
}

func TestCorruptLengthFromRelay(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	p := r.accept(t)
	s := c.Subscribe(c.NextID())
	p.write([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Recv(ctx); !errors.Is(err, frame.ErrTooLarge) {
		t.Fatalf("Recv err %v, want frame.ErrTooLarge", err)
	}
}

func TestCloseEndsPendingRecv(t *testing.T) {
	r := newFakeRelay(t, handshake(0, readyVector))
	c := connect(t, r)
	r.accept(t)
	s := c.Subscribe(c.NextID())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Recv(context.Background())
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("pending Recv: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pending Recv did not return after Close")
	}
	if err := c.Send(1, frame.TypeExecSignal, &frame.ExecSignal{Signal: 9}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if _, err := c.Request(context.Background(), frame.TypeExecSignal, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Request after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
