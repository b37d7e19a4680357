package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// dialRelay connects to the binary and reads the 0.4.4 handshake.
func dialRelay(t *testing.T, socket string) (net.Conn, uint32) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var off [4]byte
	if _, err := io.ReadFull(c, off[:]); err != nil {
		t.Fatal(err)
	}
	readFrame(t, c)
	return c, binary.BigEndian.Uint32(off[:])
}

// TestSixteenClientsThroughBinary: 16 clients at once on the real binary
// with the echo guest, each pipelining frames and getting exactly its own
// back, in order.
func TestSixteenClientsThroughBinary(t *testing.T) {
	p := startRelay(t, "--guest", "echo")
	p.waitSocket(t)
	var conns []net.Conn
	var offs []uint32
	seen := map[uint32]bool{}
	for range frame.MaxClients {
		c, off := dialRelay(t, p.socket)
		defer c.Close()
		if seen[off] {
			t.Fatalf("offset %d handed out twice", off)
		}
		seen[off] = true
		conns, offs = append(conns, c), append(offs, off)
	}
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan string, 2*len(conns))
	for i, c := range conns {
		off := offs[i]
		wg.Add(2)
		go func() {
			defer wg.Done()
			var buf []byte
			for k := range uint32(n) {
				buf, _ = frame.AppendMessage(buf[:0], off+1, frame.TypeExecStdin, frame.ExecStdin{Data: binary.BigEndian.AppendUint32(nil, off^k)})
				if _, err := c.Write(buf); err != nil {
					errs <- err.Error()
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for k := range uint32(n) {
				m, err := frame.Decode(readFrame(t, c))
				var in frame.ExecStdin
				if err == nil {
					err = m.Into(&in)
				}
				if err != nil || m.ID != off+1 || binary.BigEndian.Uint32(in.Data) != off^k {
					errs <- "wrong, foreign or out-of-order frame"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// TestDisconnectMidFrameThroughBinary: a client that leaves halfway through
// a frame costs the guest nothing but that half: the guest (played by the
// test over unix:) sees the client's whole frames, the SIGKILL for its
// session, and then the next client's frame intact.
func TestDisconnectMidFrameThroughBinary(t *testing.T) {
	g, path := newFakeGuest(t, 0)
	p := startRelay(t, "--guest", "unix:"+path)
	gc := <-g.conn
	defer gc.Close()
	gc.Write(enc(t, 0, frame.TypeReady, frame.Ready{}))
	p.waitSocket(t)
	gc.SetReadDeadline(time.Now().Add(20 * time.Second))

	a, offA := dialRelay(t, p.socket)
	b, offB := dialRelay(t, p.socket)
	defer b.Close()
	req := enc(t, offA+1, frame.TypeExecRequest, frame.ExecRequest{Cmd: "cat", Args: []string{}, Env: []string{}, Rows: 24, Cols: 80, Rlimits: []frame.Rlimit{}})
	half := enc(t, offA+1, frame.TypeExecStdin, frame.ExecStdin{Data: bytes.Repeat([]byte("z"), 4000)})
	a.Write(append(bytes.Clone(req), half[:2000]...))
	time.Sleep(50 * time.Millisecond)
	a.Close()
	if got := readFrame(t, gc); !bytes.Equal(got, req) {
		t.Fatalf("guest got %x, want the whole request", got)
	}
	if got, want := readFrame(t, gc), enc(t, offA+1, frame.TypeExecSignal, frame.ExecSignal{Signal: 9}); !bytes.Equal(got, want) {
		t.Fatalf("guest got %x, want SIGKILL %x", got, want)
	}
	next := enc(t, offB+1, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("intact")})
	b.Write(next)
	if got := readFrame(t, gc); !bytes.Equal(got, next) {
		t.Fatalf("guest got %x, want the next client's frame %x", got, next)
	}
}
