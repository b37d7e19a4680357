package client

import (
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// readyVector is the "ready" frame of vectors/protocol-v0.4.4.json, as the
// original guest agent encodes it.
var readyVector = mustHex("000000520000000000a361760161746a636f72652e726561647961705838a36c626f6f745f74696d655f6e731a075bcd156c696e69745f74696d655f6e731a0045b3526d72656164795f74696d655f6e731a07bfa480")

var readyVectorPayload = frame.Ready{BootTimeNs: 123456789, InitTimeNs: 4567890, ReadyTimeNs: 130000000}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// handshake is what a 0.4.4 relay writes to the client of slot k.
func handshake(slot uint32, ready []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, slot*frame.Step)
	return append(b, ready...)
}

// fakeRelay is a real Unix socket listener that speaks the relay's side of
// the client protocol: it writes a scripted handshake to every connection
// and hands the connection to the test as a peer, which plays the guest.
type fakeRelay struct {
	path  string
	ln    net.Listener
	peers chan *peer
}

func newFakeRelay(t testing.TB, hs []byte) *fakeRelay {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	r := &fakeRelay{path: path, ln: ln, peers: make(chan *peer, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			if len(hs) > 0 {
				nc.Write(hs)
			}
			r.peers <- &peer{t: t, nc: nc}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for {
			select {
			case p := <-r.peers:
				p.nc.Close()
			default:
				return
			}
		}
	})
	return r
}

// accept returns the relay side of the next connection.
func (r *fakeRelay) accept(t testing.TB) *peer {
	t.Helper()
	select {
	case p := <-r.peers:
		t.Cleanup(func() { p.nc.Close() })
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("fake relay: no connection")
		return nil
	}
}

// peer is the fake relay's end of one client connection.
type peer struct {
	t   testing.TB
	nc  net.Conn
	wmu sync.Mutex
}

// read returns the next frame the client sent, decoded.
func (p *peer) read() (frame.Message, error) {
	var pre [frame.LenSize]byte
	if _, err := io.ReadFull(p.nc, pre[:]); err != nil {
		return frame.Message{}, err
	}
	n, err := frame.Len(pre[:])
	if err != nil {
		return frame.Message{}, err
	}
	raw := make([]byte, n)
	copy(raw, pre[:])
	if _, err := io.ReadFull(p.nc, raw[frame.LenSize:]); err != nil {
		return frame.Message{}, err
	}
	return frame.Decode(raw)
}

// expect reads the next frame and checks its type; into, if not nil,
// receives its payload. Safe to call from a goroutine (it does not Fatal).
func (p *peer) expect(t frame.Type, into any) (frame.Message, bool) {
	p.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := p.read()
	if err != nil {
		p.t.Errorf("fake relay: want %s: %v", t, err)
		return m, false
	}
	if m.Type != t {
		p.t.Errorf("fake relay: got %s (id %d), want %s", m.TypeName, m.ID, t)
		return m, false
	}
	if want := t.Flags(); m.Flags != want {
		p.t.Errorf("fake relay: %s flags %#x, want %#x", t, m.Flags, want)
	}
	if into != nil {
		if err := m.Into(into); err != nil {
			p.t.Errorf("fake relay: %s payload: %v", t, err)
			return m, false
		}
	}
	return m, true
}

// send plays the guest: one frame under id.
func (p *peer) send(id uint32, t frame.Type, payload any) {
	b, err := frame.AppendMessage(nil, id, t, payload)
	if err != nil {
		p.t.Errorf("fake relay: encoding %s: %v", t, err)
		return
	}
	p.write(b)
}

func (p *peer) write(b []byte) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if _, err := p.nc.Write(b); err != nil {
		p.t.Errorf("fake relay: write: %v", err)
	}
}
