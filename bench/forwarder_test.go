package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// startForwarder starts impl with its own echo guest in a fresh directory,
// skipping without a C compiler.
func startForwarder(t *testing.T, impl string) *Target {
	t.Helper()
	dir, err := os.MkdirTemp("", "fwdtest") // short: socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	fwd, err := BuildForwarder(dir)
	if errors.Is(err, ErrNoCompiler) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tg, err := Start(Config{Impl: impl, Guest: UnixGuest, Self: self, Forwarder: fwd, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Stop() })
	return tg
}

func dataFrame(t *testing.T, id uint32, size int) []byte {
	t.Helper()
	f, err := ExactFrame(frame.TypeExecStdin, id, size)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The frame-aware forwarder gives each client its slot's offset and the
// guest's own ready frame, keeps clients' frames whole on the guest stream
// (a 1 MiB frame, four times its read buffer, written in pieces between
// another client's frames), routes every echo by id range, drops frames
// for an empty slot and drops a client that breaks framing, leaving the
// others alone.
func TestFrameForwarderRouting(t *testing.T) {
	tg := startForwarder(t, FrameForwarder)
	a, err := Dial(tg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Abort()
	b, err := Dial(tg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if a.Offset != 0 || b.Offset != frame.Step {
		t.Fatalf("offsets %d and %d, want 0 and %d", a.Offset, b.Offset, frame.Step)
	}
	m, err := frame.Decode(a.Ready)
	if err != nil || m.Type != frame.TypeReady {
		t.Fatalf("ready frame: %v %v", m.Type, err)
	}

	big := dataFrame(t, b.Offset+7, 1<<20)
	var small [][]byte
	for i := range 100 {
		small = append(small, dataFrame(t, a.Offset+1+uint32(i), []int{64, 200, 1000, 5000}[i%4]))
	}
	half := len(big) / 2
	steps := []struct {
		c *Conn
		p []byte
	}{
		{b, big[:half]},
		{a, bytes.Join(small[:50], nil)},
		// For slot 5, where nobody is: the echo must be dropped.
		{a, dataFrame(t, 5*frame.Step+1, 100)},
		{b, big[half:]},
		{a, bytes.Join(small[50:], nil)},
	}
	done := make(chan error, 1)
	go func() {
		for _, s := range steps {
			if err := s.c.Write(s.p); err != nil {
				done <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		done <- nil
	}()
	gotA := make([]byte, len(bytes.Join(small, nil)))
	if err := a.ReadFull(gotA); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotA, bytes.Join(small, nil)) {
		t.Fatal("client a's echoes differ from what it sent")
	}
	gotB := make([]byte, len(big))
	if err := b.ReadFull(gotB); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotB, big) {
		t.Fatal("client b's 1 MiB echo differs from what it sent")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A length of 3 is below the protocol's minimum: a is dropped.
	if err := a.Write([]byte{0, 0, 0, 3, 0, 0, 0, 1, 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Read(make([]byte, 64)); !errors.Is(err, ErrClosed) {
		t.Fatalf("client with a bad frame: read %v, want the connection closed", err)
	}
	f := dataFrame(t, b.Offset+8, 200)
	if err := b.Write(f); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(f))
	if err := b.ReadFull(got); err != nil || !bytes.Equal(got, f) {
		t.Fatalf("client b after a was dropped: %v", err)
	}
	if !tg.Alive() {
		t.Fatalf("forwarder exited: %s", tg.LogTail())
	}
}

// The byte forwarder serves one client at a time, refuses a second one
// meanwhile and serves the next once the first has gone, over the same
// guest connection.
func TestForwarderOneClient(t *testing.T) {
	tg := startForwarder(t, Forwarder)
	a, err := Dial(tg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(tg.Socket); err == nil {
		t.Fatal("a second client was served while the first was connected")
	}
	// Bytes, not frames: half a frame comes back as it is.
	f := dataFrame(t, 1, 1000)
	if err := a.Write(f[:300]); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 300)
	if err := a.ReadFull(got); err != nil || !bytes.Equal(got, f[:300]) {
		t.Fatalf("half a frame: %v", err)
	}
	if err := a.Write(f[300:]); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// The byte forwarder cannot tell whose bytes are in flight: let the
	// first client's last echo come back (and be dropped) first.
	time.Sleep(50 * time.Millisecond)
	c, err := Dial(tg.Socket)
	if err != nil {
		t.Fatalf("the next client: %v", err)
	}
	defer c.Abort()
	if c.Offset != 0 {
		t.Fatalf("offset %d, want 0", c.Offset)
	}
	g := dataFrame(t, 2, 64)
	if err := c.Write(g); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len(g))
	if err := c.ReadFull(got); err != nil || !bytes.Equal(got, g) {
		t.Fatalf("echo for the next client: %v", err)
	}
}

// The external echo guest sends core.ready first on every connection and
// reflects bytes unchanged, on several connections at once and on a new one
// after others have gone (a relay may reconnect).
func TestEchoGuest(t *testing.T) {
	dir, err := os.MkdirTemp("", "echotest")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := dir + "/guest.sock"
	go ServeEchoGuest(path) // in this process: the loop is what is tested
	connect := func() int {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			tv := unix.NsecToTimeval(IOTimeout.Nanoseconds())
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
			if err = unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err == nil {
				return fd
			}
			unix.Close(fd)
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	check := func(fd int, payload []byte) {
		t.Helper()
		c := &Conn{fd: fd}
		var head [frame.LenSize]byte
		if err := c.ReadFull(head[:]); err != nil {
			t.Fatal(err)
		}
		ready := make([]byte, frame.LenSize+binary.BigEndian.Uint32(head[:]))
		copy(ready, head[:])
		if err := c.ReadFull(ready[frame.LenSize:]); err != nil {
			t.Fatal(err)
		}
		if m, err := frame.Decode(ready); err != nil || m.Type != frame.TypeReady {
			t.Fatalf("first frame: %v %v, want core.ready", m.Type, err)
		}
		// Written while the echo is read: a payload larger than the
		// sockets' buffers would deadlock otherwise.
		werr := make(chan error, 1)
		go func() { werr <- c.Write(payload) }()
		got := make([]byte, len(payload))
		if err := c.ReadFull(got); err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("echo: %v", err)
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
	}
	one, two := connect(), connect()
	check(one, []byte("not even a frame"))
	check(two, bytes.Repeat([]byte{7}, 1<<20))
	unix.Close(one)
	unix.Close(two)
	three := connect()
	defer unix.Close(three)
	check(three, []byte("after a reconnect"))
}

// A target asked for on a path it does not have fails at once, starting
// nothing.
func TestStartRejectsPathMismatch(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []Config{
		{Impl: Forwarder, Guest: InProcess},
		{Impl: FrameForwarder, Guest: InProcess},
		{Impl: Floor, Guest: UnixGuest},
		{Impl: Reactor, Guest: "vsock"},
	} {
		cfg.Dir, cfg.Self, cfg.Forwarder = dir, "/nonexistent", "/nonexistent"
		if tg, err := Start(cfg); err == nil {
			tg.Stop()
			t.Errorf("%s on guest %q started", cfg.Impl, cfg.Guest)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("left %d files behind", len(entries))
	}
}
