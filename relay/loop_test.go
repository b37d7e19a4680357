package relay_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
)

// sockGuest is a guest on the far end of a socketpair: it says core.ready
// (unless told not to) and echoes every frame.
type sockGuest struct {
	file *os.File // the relay's end
	conn *net.UnixConn
}

func newSockGuest(t *testing.T, ready bool) *sockGuest {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	g := &sockGuest{file: os.NewFile(uintptr(fds[0]), "relay-end")}
	gf := os.NewFile(uintptr(fds[1]), "guest-end")
	c, err := net.FileConn(gf)
	gf.Close()
	if err != nil {
		t.Fatal(err)
	}
	g.conn = c.(*net.UnixConn)
	t.Cleanup(func() { g.conn.Close() })
	if ready {
		f, _ := frame.AppendMessage(nil, 0, frame.TypeReady, frame.Ready{})
		g.conn.Write(f)
	}
	go io.Copy(g.conn, g.conn) // echo: frames come back whole and in order
	return g
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startLoop(t *testing.T) *relay.Loop {
	t.Helper()
	l, err := relay.NewLoop(relay.LoopOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	t.Cleanup(func() {
		l.Stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("loop Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("loop did not stop")
		}
	})
	return l
}

// roundTrip connects to socket, takes the 0.4 handshake and echoes one
// frame through the relay.
func roundTrip(t *testing.T, socket string) {
	t.Helper()
	dialRoundTrip(t, socket).Close()
}

// dialRoundTrip is roundTrip leaving the client connected.
func dialRoundTrip(t *testing.T, socket string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var off [4]byte
	if _, err := io.ReadFull(c, off[:]); err != nil {
		t.Fatalf("%s: handshake: %v", socket, err)
	}
	readOne(t, c) // core.ready
	f, _ := frame.AppendMessage(nil, binary.BigEndian.Uint32(off[:])+1, frame.TypeExecStdin, frame.ExecStdin{Data: []byte(socket)})
	c.Write(f)
	if got := readOne(t, c); !bytes.Equal(got, f) {
		t.Fatalf("%s: echo %x, want %x", socket, got, f)
	}
	return c
}

func readOne(t *testing.T, c net.Conn) []byte {
	t.Helper()
	var h [4]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4+binary.BigEndian.Uint32(h[:]))
	copy(b, h[:])
	if _, err := io.ReadFull(c, b[4:]); err != nil {
		t.Fatal(err)
	}
	return b
}

func waitDone(t *testing.T, r *relay.Relay) {
	t.Helper()
	select {
	case <-r.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("relay not done (state %v)", r.State())
	}
}

// Many relays share one loop; each serves its own clients, and one ending
// (closed by its owner, its guest gone, never ready) leaves the others
// serving.
func TestLoopServesManyRelays(t *testing.T) {
	l := startLoop(t)
	dir := t.TempDir()
	const n = 40
	rs := make([]*relay.Relay, n)
	socks := make([]string, n)
	guests := make([]*sockGuest, n)
	for i := range n {
		guests[i] = newSockGuest(t, i != n-1)
		socks[i] = filepath.Join(dir, "s"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		o := relay.Options{Socket: socks[i], Guest: guests[i].file, Logger: quietLogger()}
		if i == n-1 {
			o.ReadyTimeout = 300 * time.Millisecond
		}
		r, err := l.Add(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(socks[i]); err != nil {
			t.Fatalf("Add returned before the socket listens: %v", err)
		}
		rs[i] = r
	}
	if got := l.Relays(); got != n {
		t.Fatalf("Relays() = %d, want %d", got, n)
	}
	for i := range n - 1 {
		<-rs[i].Ready()
		roundTrip(t, socks[i])
	}

	// The one that never says ready times out alone.
	waitDone(t, rs[n-1])
	if rs[n-1].State() != relay.StateGuestGone || rs[n-1].Err() == nil || !strings.Contains(rs[n-1].Err().Error(), "core.ready") {
		t.Fatalf("never-ready relay: state %v, err %v", rs[n-1].State(), rs[n-1].Err())
	}
	// Closed by its owner: socket gone, Done closed.
	rs[0].Close()
	waitDone(t, rs[0])
	if rs[0].State() != relay.StateStopped {
		t.Fatalf("closed relay in state %v", rs[0].State())
	}
	if _, err := os.Stat(socks[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("closed relay's socket: %v", err)
	}
	// Its guest gone.
	guests[1].conn.Close()
	waitDone(t, rs[1])
	if rs[1].State() != relay.StateGuestGone || !errors.Is(rs[1].Err(), relay.ErrGuestClosed) {
		t.Fatalf("guest-gone relay: state %v, err %v", rs[1].State(), rs[1].Err())
	}
	if got := l.Relays(); got != n-3 {
		t.Fatalf("Relays() = %d after three ended, want %d", got, n-3)
	}
	for i := 2; i < n-1; i++ {
		roundTrip(t, socks[i])
	}
}

// An idle relay holds no buffer, even with clients connected: the guest's
// read buffer and the clients' go back to the loop's pool once they are
// empty.
func TestLoopIdleRelayHoldsNoBuffers(t *testing.T) {
	l := startLoop(t)
	dir := t.TempDir()
	for i := range 8 {
		g := newSockGuest(t, true)
		sock := filepath.Join(dir, "s"+string(rune('0'+i)))
		r, err := l.Add(relay.Options{Socket: sock, Guest: g.file, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		<-r.Ready()
		c := dialRoundTrip(t, sock)
		defer c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.Stats().PoolLent != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pool still lends %d bytes with every relay idle", l.Stats().PoolLent)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop ends every relay and removes every socket before Run returns.
func TestLoopStop(t *testing.T) {
	l, err := relay.NewLoop(relay.LoopOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Run() }()
	dir := t.TempDir()
	var rs []*relay.Relay
	for i := range 5 {
		g := newSockGuest(t, i%2 == 0) // some still waiting for ready
		r, err := l.Add(relay.Options{Socket: filepath.Join(dir, string(rune('a'+i))), Guest: g.file, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	<-rs[0].Ready()
	l.Stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		waitDone(t, r)
		if r.State() != relay.StateStopped {
			t.Fatalf("state %v after Stop", r.State())
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("sockets left after Stop: %v", ents)
	}
	if _, err := l.Add(relay.Options{Socket: filepath.Join(dir, "late"), Guest: newSockGuest(t, true).file}); err == nil {
		t.Fatal("Add after Stop succeeded")
	}
}

// A sandbox whose guest floods its client at full speed shares the loop
// with a neighbour: the neighbour's round trips go on, and so does the
// flood (neither starves the other).
func TestLoopFloodDoesNotStarveNeighbour(t *testing.T) {
	l := startLoop(t)
	dir := t.TempDir()

	// The flooder: its guest writes 64 KiB frames for slot 0 as fast as the
	// relay takes them.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	gf := os.NewFile(uintptr(fds[1]), "flood-guest")
	defer gf.Close()
	ready, _ := frame.AppendMessage(nil, 0, frame.TypeReady, frame.Ready{})
	gf.Write(ready)
	floodSock := filepath.Join(dir, "flood")
	fr, err := l.Add(relay.Options{Socket: floodSock, Guest: os.NewFile(uintptr(fds[0]), "flood-relay-end"), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	<-fr.Ready()
	fc, err := net.Dial("unix", floodSock)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	var off [4]byte
	io.ReadFull(fc, off[:])
	readOne(t, fc)
	chunk, _ := frame.AppendMessage(nil, binary.BigEndian.Uint32(off[:])+1, frame.TypeExecStdout, frame.ExecStdout{Data: make([]byte, 64<<10)})
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := gf.Write(chunk); err != nil {
				return
			}
		}
	}()
	var flooded atomicCounter
	go func() {
		buf := make([]byte, 1<<20)
		for {
			n, err := fc.Read(buf)
			flooded.add(n)
			if err != nil {
				return
			}
		}
	}()

	g := newSockGuest(t, true)
	sock := filepath.Join(dir, "neighbour")
	r, err := l.Add(relay.Options{Socket: sock, Guest: g.file, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	<-r.Ready()
	c := dialRoundTrip(t, sock)
	defer c.Close()
	before := flooded.load()
	for range 200 {
		f, _ := frame.AppendMessage(nil, 1, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("ping")})
		c.Write(f)
		if got := readOne(t, c); !bytes.Equal(got, f) {
			t.Fatalf("neighbour echoed %x", got)
		}
	}
	if during := flooded.load() - before; during < 1<<20 {
		t.Fatalf("the flood moved %d bytes during the neighbour's 200 round trips; it should go on", during)
	}
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add(n int)   { c.n.Add(int64(max(n, 0))) }
func (c *atomicCounter) load() int64 { return c.n.Load() }

// Closing many relays at once overflows what the loop hands its side
// goroutine in one pass; every Done still comes, with no other event to
// wake the loop.
func TestLoopCloseMany(t *testing.T) {
	l := startLoop(t)
	dir := t.TempDir()
	const n = 600
	rs := make([]*relay.Relay, n)
	for i := range n {
		g := newSockGuest(t, true)
		r, err := l.Add(relay.Options{Socket: filepath.Join(dir, "s"+strconv.Itoa(i)), Guest: g.file, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		rs[i] = r
	}
	for _, r := range rs {
		<-r.Ready()
	}
	for _, r := range rs {
		r.Close()
	}
	for _, r := range rs {
		waitDone(t, r)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 || l.Relays() != 0 {
		t.Fatalf("%d sockets and %d relays left after closing them all", len(ents), l.Relays())
	}
}
