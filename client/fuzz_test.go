package client

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// FuzzHandshake plays a relay that writes arbitrary bytes as its handshake
// and hangs up. Dial must return an error or a Conn that agrees with the
// bytes, never panic, and never wait for its deadline: the relay closed.
func FuzzHandshake(f *testing.F) {
	readyZero, _ := frame.AppendMessage(nil, 0, frame.TypeReady, &frame.Ready{})
	started, _ := frame.AppendMessage(nil, 1, frame.TypeExecStarted, &frame.ExecStarted{Pid: 1})
	off := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	f.Add(handshake(0, readyVector))
	f.Add(handshake(3, readyVector))
	f.Add(handshake(15, readyZero))
	f.Add(append(handshake(1, readyVector), started...))                         // a frame right behind
	f.Add(append(off(frame.Step), append(off(2*frame.Step), readyVector...)...)) // 0.5+ [start][end]
	f.Add(handshake(0, readyVector[:50]))
	f.Add(append(off(7), readyVector...))
	f.Add(append(off(0), 0xff, 0xff, 0xff, 0xff))
	f.Add(append(off(0), 0, 0, 0, 5, 0, 0, 0, 0, 0))
	f.Add(append(off(0), started...))
	f.Add([]byte{})

	path := filepath.Join(f.TempDir(), "relay.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	inputs := make(chan []byte, 1)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			b := <-inputs
			go func() {
				nc.Write(b)
				nc.Close()
			}()
		}
	}()

	f.Fuzz(func(t *testing.T, b []byte) {
		inputs <- b
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := Dial(ctx, path)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Dial waited for its deadline on a closed connection: %v", err)
			}
			return
		}
		defer c.Close()
		start, end := c.Range()
		if c.Slot() < 0 || c.Slot() >= frame.MaxClients || start != uint32(c.Slot())*frame.Step || end-start != frame.Step {
			t.Fatalf("slot %d, range [%d, %d)", c.Slot(), start, end)
		}
		if start != binary.BigEndian.Uint32(b) {
			t.Fatalf("range starts at %d, the relay sent %d", start, binary.BigEndian.Uint32(b))
		}
		raw := c.ReadyFrame()
		if !bytes.HasPrefix(b[4:], raw) {
			t.Fatalf("ReadyFrame %x is not what followed the offset", raw)
		}
		m, err := frame.Decode(raw)
		if err != nil || m.Type != frame.TypeReady {
			t.Fatalf("accepted a ready frame that does not decode as one: %v %v", m.Type, err)
		}
		if id := c.NextID(); id <= start || id >= end {
			t.Fatalf("id %d outside the range", id)
		}
	})
}
