//go:build linux

package vmtest

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/client"
	"github.com/agentrelay/agentrelay/frame"
)

// The benchmarks run one `cat` in the guest and push stdin through it: a
// 64-byte round trip (a stdin frame out, the stdout frame back) and a
// 64 KiB stream (one 64 KiB stdin frame, its echo in stdout frames). Each
// runs through the relay and straight on QEMU's console socket, the floor
// of this path: the same frames with no relay between. The console takes
// one client at a time, so the relay is stopped for the floor and started
// again after it. Under TCG these are emulation figures: they say what the
// relay adds to a slow guest, not what a KVM guest does.
func BenchmarkVM(b *testing.B) {
	needVM(b)
	for _, w := range []struct {
		name string
		size int
	}{{"rt64", 64}, {"stream64k", 64 << 10}} {
		b.Run(w.name+"/relay", func(b *testing.B) { benchCat(b, relayFramer(b), w.size) })
		b.Run(w.name+"/floor", func(b *testing.B) { benchCat(b, floorFramer(b), w.size) })
	}
}

// A framer moves whole frames: client.Conn in raw mode through the relay,
// or netFramer on the console socket.
type framer interface {
	WriteFrame(raw []byte) error
	ReadFrame(buf []byte) (frame.Frame, error)
}

type session struct {
	f  framer
	id uint32
}

func relayFramer(b *testing.B) session {
	if relay == nil {
		var err error
		if relay, err = startRelay(relayPath()); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.DialRaw(ctx, relay.socket)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	start, _ := c.Range()
	return session{c, start + 1}
}

func relayPath() string { return dir + "/agent.sock" }

func floorFramer(b *testing.B) session {
	if relay != nil {
		n := hangUps()
		relay.stop()
		relay = nil
		if err := awaitHangUp(n); err != nil {
			b.Fatal(err)
		}
	}
	nc, err := net.Dial("unix", vm.Console)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		n := hangUps()
		nc.Close()
		if err := awaitHangUp(n); err != nil {
			b.Fatal(err)
		}
	})
	f := &netFramer{c: nc, r: bufio.NewReaderSize(nc, 256<<10)}
	m, err := f.ReadFrame(nil)
	if err != nil {
		b.Fatal(err)
	}
	if d, err := frame.DecodeFrame(m); err != nil || d.Type != frame.TypeReady {
		b.Fatalf("first frame from the guest: %v %v", d.TypeName, err)
	}
	return session{f, 1}
}

type netFramer struct {
	c net.Conn
	r *bufio.Reader
}

func (n *netFramer) WriteFrame(raw []byte) error {
	_, err := n.c.Write(raw)
	return err
}

func (n *netFramer) ReadFrame(buf []byte) (frame.Frame, error) {
	var hdr [frame.LenSize]byte
	if _, err := io.ReadFull(n.r, hdr[:]); err != nil {
		return frame.Frame{}, err
	}
	total := frame.LenSize + int(binary.BigEndian.Uint32(hdr[:]))
	if cap(buf) < total {
		buf = make([]byte, total)
	}
	buf = buf[:total]
	copy(buf, hdr[:])
	if _, err := io.ReadFull(n.r, buf[frame.LenSize:]); err != nil {
		return frame.Frame{}, err
	}
	return frame.Split(buf)
}

func benchCat(b *testing.B, s session, size int) {
	req, err := frame.AppendMessage(nil, s.id, frame.TypeExecRequest, &frame.ExecRequest{Cmd: "cat", Rows: 24, Cols: 80})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.f.WriteFrame(req); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	f, err := s.f.ReadFrame(buf)
	if err != nil {
		b.Fatal(err)
	}
	if m, err := frame.DecodeFrame(f); err != nil || m.Type != frame.TypeExecStarted {
		b.Fatalf("exec cat: %v %v", m.TypeName, err)
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	stdin, err := frame.AppendMessage(nil, s.id, frame.TypeExecStdin, frame.ExecStdin{Data: data})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.f.WriteFrame(stdin); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < size; {
			f, err := s.f.ReadFrame(buf)
			if err != nil {
				b.Fatal(err)
			}
			p, err := frame.Peek(f.Body)
			if err != nil || p.Type != frame.TypeExecStdout {
				b.Fatalf("frame %v: %v", p.Type, err)
			}
			got += len(p.Data)
		}
	}
	b.StopTimer()
	// Closing stdin ends cat, and its session, before the next run.
	eof, _ := frame.AppendMessage(nil, s.id, frame.TypeExecStdin, frame.ExecStdin{})
	s.f.WriteFrame(eof)
	for {
		f, err := s.f.ReadFrame(buf)
		if err != nil {
			b.Fatal(err)
		}
		if f.Flags&frame.FlagTerminal != 0 {
			break
		}
	}
}
