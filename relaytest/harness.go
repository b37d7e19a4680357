package relaytest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/relay"
	"github.com/agentrelay/agentrelay/ring"
)

// Server is what an implementation offers the suite: the embedding API of
// package relay.
type Server interface {
	WaitReady(ctx context.Context) error
	Run(ctx context.Context) error
	Stop()
	Shutdowns() <-chan struct{}
}

// Impl names an implementation and how to build one.
type Impl struct {
	Name string
	New  func(relay.Options) (Server, error)
	// Improved says the implementation has the reactor's improvements over
	// 0.4.4; the Improvements group is skipped, test by test, otherwise.
	Improved bool
	// Ports lists the guest ports the implementation serves; Run runs the
	// suite once per port. Empty means PortRing only.
	Ports []Port
	// Port is the port Start gives the relay; Run sets it.
	Port Port
	// Forms lists the handshake forms the implementation speaks; Run runs
	// the suite once per form (and port). Empty means Handshake04 only.
	Forms []relay.Handshake
	// Form is the form Start asks for (Options.Handshake); Run sets it.
	Form relay.Handshake
}

// form is the form a relay of impl speaks with the suite's guest (which
// sends core.ready with v = 1).
func (impl Impl) form() relay.Handshake {
	if impl.Form == relay.Handshake05 {
		return relay.Handshake05
	}
	return relay.Handshake04
}

// Port is how a test guest reaches the relay.
type Port string

const (
	// PortRing: a ring.Console (Options.Console), as an embedding VMM or an
	// in-process guest has.
	PortRing Port = "ring"
	// PortFD: a connected Unix stream socket (Options.Guest), as QEMU's
	// chardev or a hybrid vsock connection gives.
	PortFD Port = "fd"
)

// Guest plays the guest agent on a console: it collects every host→guest
// frame and writes guest→host bytes.
type Guest struct {
	Port    Port
	Console *ring.Console // PortRing
	Conn    *net.UnixConn // PortFD: the guest's end of the socket
	file    *os.File      // PortFD: the relay's end, for Options.Guest
	frames  chan []byte
	notices chan []byte // core.relay.client.disconnected, kept apart from frames
	paused  atomic.Bool // the reader stops reading host→guest bytes
	done    chan struct{}
}

// NewGuest starts a guest on port and reads what the relay sends it into
// frames. capacity is the ring capacity (PortRing) or the socket's buffer
// sizes (PortFD); 0 means the default.
func NewGuest(t testing.TB, port Port, capacity int) *Guest {
	t.Helper()
	g := &Guest{Port: port, frames: make(chan []byte, 1<<16), notices: make(chan []byte, 1<<10), done: make(chan struct{})}
	switch port {
	case PortRing, "":
		g.Port = PortRing
		c, err := ring.NewConsole(capacity)
		if err != nil {
			t.Fatal(err)
		}
		g.Console = c
	case PortFD:
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if capacity > 0 {
			for _, fd := range fds {
				unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, capacity)
				unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, capacity)
			}
		}
		g.file = os.NewFile(uintptr(fds[0]), "guest-console")
		gf := os.NewFile(uintptr(fds[1]), "guest")
		fc, err := net.FileConn(gf)
		gf.Close()
		if err != nil {
			t.Fatal(err)
		}
		g.Conn = fc.(*net.UnixConn)
	default:
		t.Fatalf("unknown port %q", port)
	}
	go g.read()
	t.Cleanup(func() {
		// A test that failed while the guest was paused must not hang here.
		g.Resume()
		if g.Console != nil {
			g.Console.Backend().CloseRead()
			<-g.done
			g.Console.Backend().CloseWrite()
			return
		}
		g.Conn.Close()
		<-g.done
		g.file.Close() // the relay's end, if no relay took it
	})
	return g
}

// SetOptions points o at the guest: Options.Console or Options.Guest.
func (g *Guest) SetOptions(o *relay.Options) {
	if g.Console != nil {
		o.Console = g.Console
	} else {
		o.Guest = g.file
	}
}

// Write writes guest→host bytes, blocking while the relay does not read.
func (g *Guest) Write(p []byte) (int, error) {
	if g.Console != nil {
		return g.Console.Backend().Write(p)
	}
	return g.Conn.Write(p)
}

// CloseWrite ends the guest→host stream.
func (g *Guest) CloseWrite() {
	if g.Console != nil {
		g.Console.Backend().CloseWrite()
		return
	}
	g.Conn.CloseWrite()
}

// readSome reads host→guest bytes for at most 10 ms.
func (g *Guest) readSome(p []byte) (int, error) {
	deadline := time.Now().Add(10 * time.Millisecond)
	if g.Console != nil {
		return g.Console.Rx.Read(p, deadline)
	}
	g.Conn.SetReadDeadline(deadline)
	return g.Conn.Read(p)
}

func (g *Guest) read() {
	defer close(g.done)
	sc := frame.NewScanner(2 * frame.MaxFrame)
	for {
		if g.paused.Load() {
			time.Sleep(time.Millisecond)
			continue
		}
		// Short reads keep Pause prompt: a paused guest must stop reading.
		n, err := g.readSome(sc.Space())
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return
		}
		sc.Commit(n)
		for {
			f, err := sc.Next()
			if err != nil {
				break
			}
			if m, err := frame.Decode(f.Raw); err == nil && m.TypeName == "core.relay.client.disconnected" {
				g.notices <- bytes.Clone(f.Raw)
				continue
			}
			g.frames <- bytes.Clone(f.Raw)
		}
	}
}

// Pause stops the guest reading Rx, so the ring fills up; Resume undoes it.
func (g *Guest) Pause()  { g.paused.Store(true) }
func (g *Guest) Resume() { g.paused.Store(false) }

// Send writes raw bytes into the guest→host stream (blocking while Tx is
// full, never dropping).
func (g *Guest) Send(t testing.TB, raw []byte) {
	t.Helper()
	if _, err := g.Write(raw); err != nil {
		t.Fatalf("guest send: %v", err)
	}
}

// SendMsg encodes and sends one guest frame.
func (g *Guest) SendMsg(t testing.TB, id uint32, typ frame.Type, payload any) []byte {
	t.Helper()
	raw, err := frame.AppendMessage(nil, id, typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	g.Send(t, raw)
	return raw
}

// Next returns the next host→guest frame, failing the test after timeout.
func (g *Guest) Next(t testing.TB, timeout time.Duration) []byte {
	t.Helper()
	select {
	case f := <-g.frames:
		return f
	case <-time.After(timeout):
		t.Fatalf("guest: no frame within %v", timeout)
		return nil
	}
}

// Notice returns the next core.relay.client.disconnected the relay sent
// (0.5 form), failing the test after timeout. Next never returns these.
func (g *Guest) Notice(t testing.TB, timeout time.Duration) []byte {
	t.Helper()
	select {
	case f := <-g.notices:
		return f
	case <-time.After(timeout):
		t.Fatalf("guest: no core.relay.client.disconnected within %v", timeout)
		return nil
	}
}

// NoNotice checks that no core.relay.client.disconnected arrives for d.
func (g *Guest) NoNotice(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case <-g.notices:
		t.Fatal("guest: unexpected core.relay.client.disconnected")
	case <-time.After(d):
	}
}

// Quiet checks that no host→guest frame arrives for d.
func (g *Guest) Quiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case f := <-g.frames:
		m, _ := frame.Decode(f)
		t.Fatalf("guest: unexpected frame id=%d type=%s", m.ID, m.TypeName)
	case <-time.After(d):
	}
}

// ReadyFrame is the core.ready frame the suite's guest sends.
func ReadyFrame(t testing.TB) []byte {
	raw, err := frame.AppendMessage(nil, 0, frame.TypeReady, frame.Ready{BootTimeNs: 123456789, InitTimeNs: 4567890, ReadyTimeNs: 130000000})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// Env is one running relay with its guest.
type Env struct {
	T      testing.TB
	Impl   Impl
	Guest  *Guest
	Socket string
	Server Server
	Ready  []byte
	runErr chan error
	cancel context.CancelFunc
}

// Config adjusts an Env before it starts.
type Config struct {
	Ring     int                  // ring capacity or socket buffer size; 0 = default
	Options  func(*relay.Options) // tweak options
	PreReady [][]byte             // guest frames sent before core.ready
	NoReady  bool                 // do not send core.ready or wait for it
}

// Start builds and runs a relay of impl with a fresh guest, waits for it to
// be ready, and stops it when the test ends.
func Start(t testing.TB, impl Impl, cfg Config) *Env {
	t.Helper()
	g := NewGuest(t, impl.Port, cfg.Ring)
	dir, err := os.MkdirTemp("", "relaytest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &Env{T: t, Impl: impl, Guest: g, Socket: filepath.Join(dir, "agent.sock"), runErr: make(chan error, 1)}
	o := relay.Options{Socket: e.Socket, ReadyTimeout: 5 * time.Second, Handshake: impl.Form}
	g.SetOptions(&o)
	if cfg.Options != nil {
		cfg.Options(&o)
	}
	s, err := impl.New(o)
	if err != nil {
		t.Fatalf("%s: new: %v", impl.Name, err)
	}
	e.Server = s
	for _, f := range cfg.PreReady {
		g.Send(t, f)
	}
	if cfg.NoReady {
		return e
	}
	e.Ready = ReadyFrame(t)
	g.Send(t, e.Ready)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatalf("%s: wait ready: %v", impl.Name, err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	e.cancel = rcancel
	go func() { e.runErr <- s.Run(rctx) }()
	t.Cleanup(func() {
		rcancel()
		select {
		case <-e.runErr:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: Run did not return after cancel", impl.Name)
		}
	})
	return e
}

// Wait returns Run's result, failing after timeout.
func (e *Env) Wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-e.runErr:
		e.runErr <- err // for the cleanup
		return err
	case <-time.After(timeout):
		t.Fatalf("%s: Run still running after %v", e.Impl.Name, timeout)
		return nil
	}
}

// Step is the id range of one slot in the form the relay speaks.
func (e *Env) Step() uint32 {
	if e.Impl.form() == relay.Handshake05 {
		return frame.Step05
	}
	return frame.Step
}

// Slots is how many clients the relay serves at once in its form.
func (e *Env) Slots() int {
	if e.Impl.form() == relay.Handshake05 {
		return relay.MaxSlots
	}
	return frame.MaxClients
}

// Client is a raw client: a real Unix socket, the relay's handshake (either
// form), frames.
type Client struct {
	Conn *net.UnixConn
	// Offset is the slot's boundary: the client's ids are Offset+1 up to
	// (not including) Offset+Step. The 0.4 form sends it; the 0.5 form
	// sends Offset+1 and Offset+Step.
	Offset uint32
	Step   uint32
	Ready  []byte
	sc     *frame.Scanner
}

// Slot is the client's slot, from its id offset.
func (c *Client) Slot() int { return int(c.Offset / c.Step) }

// ID returns the n-th id of the client's range (n ≥ 1).
func (c *Client) ID(n uint32) uint32 { return c.Offset + n }

// Dial connects and reads the handshake.
func (e *Env) Dial(t testing.TB) *Client {
	t.Helper()
	c, err := e.DialErr(5 * time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Conn.Close() })
	return c
}

// DialErr connects and reads the handshake within timeout.
func (e *Env) DialErr(timeout time.Duration) (*Client, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: e.Socket, Net: "unix"})
	if err != nil {
		return nil, err
	}
	c := &Client{Conn: conn, Step: e.Step(), sc: frame.NewScanner(2 * frame.MaxFrame)}
	conn.SetReadDeadline(time.Now().Add(timeout))
	var hs [8]byte
	n := 4
	if e.Impl.form() == relay.Handshake05 {
		n = 8
	}
	if _, err := io.ReadFull(conn, hs[:n]); err != nil {
		conn.Close()
		return nil, err
	}
	c.Offset = binary.BigEndian.Uint32(hs[:])
	if n == 8 {
		start, end := c.Offset, binary.BigEndian.Uint32(hs[4:])
		if start == 0 || start%c.Step != 1 || end != start-1+c.Step {
			conn.Close()
			return nil, fmt.Errorf("0.5 handshake: range [%d, %d) is not a slot's", start, end)
		}
		c.Offset = start - 1
	}
	f, err := c.recv()
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.Ready = f
	conn.SetReadDeadline(time.Time{})
	return c, nil
}

// Send writes raw bytes.
func (c *Client) Send(t testing.TB, raw []byte) {
	t.Helper()
	if _, err := c.Conn.Write(raw); err != nil {
		t.Fatalf("client %d send: %v", c.Slot(), err)
	}
}

// SendMsg encodes and sends one frame.
func (c *Client) SendMsg(t testing.TB, id uint32, typ frame.Type, payload any) []byte {
	t.Helper()
	raw, err := frame.AppendMessage(nil, id, typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	c.Send(t, raw)
	return raw
}

func (c *Client) recv() ([]byte, error) {
	for {
		f, err := c.sc.Next()
		if err == nil {
			return bytes.Clone(f.Raw), nil
		}
		if !errors.Is(err, frame.ErrIncomplete) {
			return nil, err
		}
		n, err := c.Conn.Read(c.sc.Space())
		if n > 0 {
			c.sc.Commit(n)
			continue
		}
		if err != nil {
			return nil, err
		}
	}
}

// Next returns the next frame for the client, failing after timeout.
func (c *Client) Next(t testing.TB, timeout time.Duration) []byte {
	t.Helper()
	c.Conn.SetReadDeadline(time.Now().Add(timeout))
	f, err := c.recv()
	if err != nil {
		t.Fatalf("client %d: no frame within %v: %v", c.Slot(), timeout, err)
	}
	return f
}

// Recv is Next returning the error instead of failing.
func (c *Client) Recv(timeout time.Duration) ([]byte, error) {
	c.Conn.SetReadDeadline(time.Now().Add(timeout))
	return c.recv()
}

// Closed checks that the relay closes the client's connection within
// timeout (frames still arriving before the close are skipped).
func (c *Client) Closed(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c.Conn.SetReadDeadline(deadline)
		_, err := c.recv()
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return
		}
		t.Fatalf("client %d: expected the relay to close the connection: %v", c.Slot(), err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// Decode decodes a frame, failing the test on error.
func Decode(t testing.TB, raw []byte) frame.Message {
	t.Helper()
	m, err := frame.Decode(raw)
	if err != nil {
		t.Fatalf("decode %x: %v", raw, err)
	}
	return m
}

// Eventually polls cond until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Drain discards host→guest frames for d and returns how many there were.
func (g *Guest) Drain(d time.Duration) int {
	n := 0
	timeout := time.After(d)
	for {
		select {
		case <-g.frames:
			n++
		case <-timeout:
			return n
		}
	}
}
