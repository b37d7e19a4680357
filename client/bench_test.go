package client

import (
	"context"
	"io"
	"testing"

	"github.com/agentrelay/agentrelay/frame"
)

// echoGuest answers every frame the client sends with a TERMINAL exited
// frame under the same id, like a guest running `true` instantly.
func echoGuest(p *peer) {
	for {
		m, err := p.read()
		if err != nil {
			return
		}
		b, _ := frame.AppendMessage(nil, m.ID, frame.TypeExecExited, &frame.ExecExited{Code: 0})
		if _, err := p.nc.Write(b); err != nil {
			return
		}
	}
}

// BenchmarkRequestRoundTrip is one Request and its reply through the
// demultiplexer: the SDK's per-request overhead (plus a socket round trip).
func BenchmarkRequestRoundTrip(b *testing.B) {
	r := newFakeRelay(b, handshake(0, readyVector))
	c := connect(b, r)
	go echoGuest(r.accept(b))
	ctx := context.Background()
	req := &frame.ExecSignal{Signal: 0}
	b.ReportAllocs()
	for b.Loop() {
		s, err := c.Request(ctx, frame.TypeExecSignal, req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Recv(ctx); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkStreamStdout measures output delivery: 16 KiB stdout frames
// read, routed and handed to Exec's writer.
func BenchmarkStreamStdout(b *testing.B) {
	const chunk = 16 << 10
	r := newFakeRelay(b, handshake(0, readyVector))
	c := connect(b, r)
	p := r.accept(b)
	go func() {
		var req frame.ExecRequest
		m, ok := p.expect(frame.TypeExecRequest, &req)
		if !ok {
			return
		}
		out, _ := frame.AppendMessage(nil, m.ID, frame.TypeExecStdout, &frame.ExecStdout{Data: make([]byte, chunk)})
		p.send(m.ID, frame.TypeExecStarted, &frame.ExecStarted{Pid: 1})
		for range b.N {
			if _, err := p.nc.Write(out); err != nil {
				return
			}
		}
		p.send(m.ID, frame.TypeExecExited, &frame.ExecExited{Code: 0})
	}()
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	code, err := c.Exec(context.Background(), ExecOptions{Cmd: "cat", Stdout: io.Discard})
	if err != nil || code != 0 {
		b.Fatal(code, err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkSend is the write path: encode a 4 KiB stdin frame and write it.
func BenchmarkSend(b *testing.B) {
	r := newFakeRelay(b, handshake(0, readyVector))
	c := connect(b, r)
	p := r.accept(b)
	go io.Copy(io.Discard, p.nc)
	data := &frame.ExecStdin{Data: make([]byte, 4<<10)}
	b.SetBytes(4 << 10)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Send(1, frame.TypeExecStdin, data); err != nil {
			b.Fatal(err)
		}
	}
}
