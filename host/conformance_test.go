package host

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
)

// hostServer is one sandbox of a Host as the conformance suite drives a
// relay: New is a PUT with the suite's guest connection in place of the
// dial, WaitReady waits for Ready, Run for Done, Stop drains as
// relay serve does on SIGTERM.
type hostServer struct {
	h  *Host
	sb *sandbox
}

func (s hostServer) WaitReady(ctx context.Context) error {
	r := s.sb.r
	select {
	case <-r.Ready():
		return nil
	case <-r.Done():
		return r.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s hostServer) Run(ctx context.Context) error {
	r := s.sb.r
	select {
	case <-r.Done():
	case <-ctx.Done():
		r.Close()
		<-r.Done()
	}
	if err := s.h.Remove(s.sb.name); err != nil {
		return err
	}
	return r.Err()
}

func (s hostServer) Stop()                      { s.sb.r.Stop() }
func (s hostServer) Shutdowns() <-chan struct{} { return s.sb.r.Shutdowns() }
func (s hostServer) Stats() relay.Stats         { return s.sb.r.Stats() }

// TestConformance runs the relay conformance suite against sandboxes of one
// host daemon with two loops, on the fd port (the only one a host serves).
func TestConformance(t *testing.T) {
	h, err := New(Options{Loops: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var n atomic.Int64
	relaytest.Run(t, relaytest.Impl{
		Name:     "host",
		Improved: true,
		Ports:    []relaytest.Port{relaytest.PortFD},
		Forms:    []relay.Handshake{relay.Handshake04, relay.Handshake05},
		New: func(o relay.Options) (relaytest.Server, error) {
			name := fmt.Sprintf("conformance-%d", n.Add(1))
			c := config{spec: Spec{Guest: "unix:/suite", Socket: o.Socket, Handshake: o.Handshake.String(), ReadyTimeout: o.ReadyTimeout.String()},
				handshake: o.Handshake, readyTimeout: o.ReadyTimeout}
			sb, err := h.add(context.Background(), name, c, &o)
			if err != nil {
				return nil, err
			}
			return hostServer{h, sb}, nil
		},
	})
}
