package host

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/client"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relaytest"
)

// shortDir is a private directory with a path short enough for sockets.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "host")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// guestMode is how a test guest behaves on each connection.
type guestMode int

const (
	echoGuest   guestMode = iota // core.ready, then every byte back
	silentGuest                  // never sends core.ready; reads and drops
	floodGuest                   // core.ready, then 64 KiB frames for id 1 until the connection breaks
)

// testGuest is a VMM's console socket (QEMU's chardev, server=on): it
// listens on a Unix socket path and plays a guest on each connection.
type testGuest struct {
	path  string
	ln    *net.UnixListener
	mode  guestMode
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newGuest(t testing.TB, dir, name string, mode guestMode) *testGuest {
	t.Helper()
	g := &testGuest{path: filepath.Join(dir, name), mode: mode}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: g.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	g.ln = ln
	ready := relaytest.ReadyFrame(t)
	flood, err := frame.AppendMessage(nil, 1, frame.TypeExecStdout, frame.ExecStdout{Data: make([]byte, 64<<10)})
	if err != nil {
		t.Fatal(err)
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			g.conns = append(g.conns, c)
			g.mu.Unlock()
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				defer c.Close()
				switch g.mode {
				case echoGuest:
					c.Write(ready)
					io.Copy(c, c)
				case silentGuest:
					io.Copy(io.Discard, c)
				case floodGuest:
					c.Write(ready)
					go io.Copy(io.Discard, c)
					for {
						if _, err := c.Write(flood); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	t.Cleanup(g.stop)
	return g
}

func (g *testGuest) spec() string { return "unix:" + g.path }

// stop is the VM going away: the socket closes and every connection ends.
func (g *testGuest) stop() {
	g.ln.Close()
	g.mu.Lock()
	for _, c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// startHost runs a Host with its control API on dir/control.sock and its
// state in dir/state.json, closed when the test ends.
func startHost(t testing.TB, dir string, o Options) (*Host, *Client) {
	t.Helper()
	o.ControlSocket = filepath.Join(dir, "control.sock")
	if o.StatePath == "" {
		o.StatePath = filepath.Join(dir, "state.json")
	}
	if o.Loops == 0 {
		o.Loops = 2
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ListenControl(o.ControlSocket)
	if err != nil {
		h.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { h.Serve(ln); close(done) }()
	t.Cleanup(func() {
		ln.Close()
		<-done
		h.Close()
		os.Remove(o.ControlSocket)
	})
	return h, NewClient(o.ControlSocket)
}

// roundTrip connects to a sandbox's socket and has a frame echoed back.
func roundTrip(t testing.TB, socket string) {
	t.Helper()
	if err := tryRoundTrip(socket, 5*time.Second); err != nil {
		t.Fatalf("round trip through %s: %v", socket, err)
	}
}

func tryRoundTrip(socket string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := client.DialRaw(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	id := c.NextID()
	if err := c.Send(id, frame.TypeExecStdout, frame.ExecStdout{Data: []byte("ping")}); err != nil {
		return err
	}
	got := make(chan error, 1)
	go func() {
		f, err := c.ReadFrame(nil)
		if err == nil && f.ID != id {
			err = errors.New("echo under another id")
		}
		got <- err
	}()
	select {
	case err := <-got:
		return err
	case <-ctx.Done():
		c.Close()
		return ctx.Err()
	}
}

// fdNames lists the process's descriptors and what they are.
func fdNames() map[string]string {
	m := map[string]string{}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		m[e.Name()] = l
	}
	return m
}

// fdsBack waits for the descriptor count to return to before, and names
// the ones left over if it does not.
func fdsBack(t testing.TB, before map[string]string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := fdNames()
		if len(now) <= len(before) {
			return
		}
		if time.Now().After(deadline) {
			var extra []string
			for k, v := range now {
				if before[k] != v {
					extra = append(extra, k+" "+v)
				}
			}
			t.Fatalf("%d descriptors more than before: %v", len(now)-len(before), extra)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	relaytest.Eventually(t, 5*time.Second, what, cond)
}

func state(t testing.TB, c *Client, name string) Info {
	t.Helper()
	in, err := c.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("GET %s: %v", name, err)
	}
	return in
}
