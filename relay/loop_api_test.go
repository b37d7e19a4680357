package relay_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/relaytest"
)

// TestLoopAPI pins down the contract package host relies on: Add returns
// with the socket listening and the relay waiting; Ready, then guest_gone
// with the socket removed when the guest's stream ends; a never-ready
// neighbour times out alone; Close and Stop end relays as stopped; Run
// returns after Stop; Add after Stop fails.
func TestLoopAPI(t *testing.T) {
	l, err := relay.NewLoop(relay.LoopOptions{Index: 3})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- l.Run() }()
	dir := t.TempDir()
	add := func(name string, timeout time.Duration) (*relay.Relay, *relaytest.Guest, string) {
		t.Helper()
		g := relaytest.NewGuest(t, relaytest.PortFD, 0)
		o := relay.Options{Socket: filepath.Join(dir, name), ReadyTimeout: timeout}
		g.SetOptions(&o)
		r, err := l.Add(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(o.Socket); err != nil {
			t.Fatalf("socket after Add: %v", err)
		}
		return r, g, o.Socket
	}
	wait := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s within 5s", what)
		}
	}

	a, ga, sockA := add("a.sock", 5*time.Second)
	if a.State() != relay.StateWaiting || l.Relays() != 1 || l.Index() != 3 {
		t.Fatalf("after Add: %s, %d relays", a.State(), l.Relays())
	}
	silent, _, sockS := add("s.sock", 200*time.Millisecond)
	ga.Send(t, relaytest.ReadyFrame(t))
	wait(a.Ready(), "Ready")
	if a.State() != relay.StateServing {
		t.Fatalf("after Ready: %s", a.State())
	}
	wait(silent.Done(), "ready timeout")
	if silent.State() != relay.StateGuestGone || silent.Err() == nil || !strings.Contains(silent.Err().Error(), "core.ready") {
		t.Fatalf("never ready: %s %v", silent.State(), silent.Err())
	}
	if _, err := os.Stat(sockS); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("never-ready socket: %v", err)
	}
	if a.State() != relay.StateServing {
		t.Fatalf("the neighbour of a never-ready relay: %s", a.State())
	}
	ga.CloseWrite()
	wait(a.Done(), "Done after the guest's end")
	if a.State() != relay.StateGuestGone || !errors.Is(a.Err(), relay.ErrGuestClosed) {
		t.Fatalf("after the guest's end: %s %v", a.State(), a.Err())
	}
	if _, err := os.Stat(sockA); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket after the guest's end: %v", err)
	}

	b, gb, _ := add("b.sock", 5*time.Second)
	gb.Send(t, relaytest.ReadyFrame(t))
	wait(b.Ready(), "Ready")
	b.Close()
	b.Close()
	wait(b.Done(), "Done after Close")
	if b.State() != relay.StateStopped {
		t.Fatalf("after Close: %s", b.State())
	}
	c, _, sockC := add("c.sock", 5*time.Second)
	l.Stop()
	wait(c.Done(), "Done after Stop")
	if c.State() != relay.StateStopped {
		t.Fatalf("a waiting relay after Stop: %s", c.State())
	}
	if _, err := os.Stat(sockC); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket after Stop: %v", err)
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Stop")
	}
	if l.Relays() != 0 {
		t.Fatalf("%d relays after Stop", l.Relays())
	}
	if _, err := l.Add(relay.Options{Socket: filepath.Join(dir, "d.sock")}); err == nil {
		t.Fatal("Add after Stop succeeded")
	}
}
