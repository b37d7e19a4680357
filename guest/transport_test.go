package guest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/ring"
)

// sockPath returns a socket path short enough for sockaddr_un.
func sockPath(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gst")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, name)
}

// readTx reads n bytes of guest stream from Tx.
func readTx(t *testing.T, c *ring.Console, n int) []byte {
	t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(readerFunc(func(p []byte) (int, error) {
		return c.Tx.Read(p, time.Now().Add(10*time.Second))
	}), buf); err != nil {
		t.Fatalf("reading Tx: %v", err)
	}
	return buf
}

func wantTxEOF(t *testing.T, c *ring.Console) {
	t.Helper()
	var b [1]byte
	if n, err := c.Tx.Read(b[:], time.Now().Add(10*time.Second)); err != io.EOF {
		t.Fatalf("Tx after the guest ended: %d bytes, %v; want EOF", n, err)
	}
}

// exercisePump runs Pump on conn (the relay's end) while guest plays the
// VM's end: guest bytes (ready + 1 MB) must reach Tx and host bytes (1 MB
// in Rx) must reach guest, both intact, over a 4 KiB console.
func exercisePump(t *testing.T, conn, guest net.Conn) {
	t.Helper()
	c := newConsole(t, 4<<10)
	defer c.Close()
	pumped := make(chan error, 1)
	go func() { pumped <- Pump(context.Background(), conn, c) }()

	up := append(DefaultReady(), bytes.Repeat([]byte("guest→host "), 100000)...)
	down := bytes.Repeat([]byte("host→guest "), 100000)
	go func() {
		guest.Write(up)
	}()
	gotDown := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(down))
		io.ReadFull(guest, b)
		gotDown <- b
	}()
	go func() {
		c.Rx.WriteAll(down, time.Now().Add(10*time.Second))
	}()
	if got := readTx(t, c, len(up)); !bytes.Equal(got, up) {
		t.Fatal("guest→host bytes differ")
	}
	if got := <-gotDown; !bytes.Equal(got, down) {
		t.Fatal("host→guest bytes differ")
	}
	// The guest hangs up: the relay sees EOF on Tx, Pump returns nil.
	guest.Close()
	wantTxEOF(t, c)
	select {
	case err := <-pumped:
		if err != nil {
			t.Fatalf("Pump: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Pump did not return after the guest hung up")
	}
	if !c.Rx.ReadClosed() {
		t.Error("Pump left Rx open for reading")
	}
}

func TestDialUnixAndPump(t *testing.T) {
	path := sockPath(t, "console.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Dial first: the socket appears later, as when the VMM is slow.
	dialed := make(chan net.Conn, 1)
	go func() {
		conn, err := DialUnix(ctx, path)
		if err != nil {
			t.Error(err)
		}
		dialed <- conn
	}()
	time.Sleep(50 * time.Millisecond)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	guest, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	conn := <-dialed
	if conn == nil {
		t.FailNow()
	}
	exercisePump(t, conn, guest)
}

func TestDialUnixGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := DialUnix(ctx, sockPath(t, "never.sock"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "never.sock") {
		t.Fatalf("DialUnix: %v", err)
	}
}

// fakeVsock is a hybrid vsock Unix socket: for each connection it reads
// the CONNECT line and replies with reply(n), n counting connections from
// 0; an empty reply hangs up (nothing listens on the port yet).
func fakeVsock(t *testing.T, path string, wantPort string, reply func(n int) string) (accepted chan net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted = make(chan net.Conn, 1)
	go func() {
		for n := 0; ; n++ {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || line != "CONNECT "+wantPort+"\n" {
				t.Errorf("vsock request %q, %v", line, err)
				conn.Close()
				return
			}
			r := reply(n)
			if r == "" {
				conn.Close()
				continue
			}
			// The reply and the guest's first bytes in one write: the
			// dialer must not read past the newline.
			if strings.HasPrefix(r, "OK ") {
				r += string(DefaultReady())
			}
			conn.Write([]byte(r))
			if !strings.HasPrefix(r, "OK ") {
				conn.Close()
				continue
			}
			accepted <- conn
			return
		}
	}()
	return accepted
}

func TestDialVsockAndPump(t *testing.T) {
	path := sockPath(t, "v.sock")
	// The first two attempts find no guest listening; the third connects.
	accepted := fakeVsock(t, path, "1024", func(n int) string {
		if n < 2 {
			return ""
		}
		return "OK 1073741824\n"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := DialVsock(ctx, path, 1024)
	if err != nil {
		t.Fatal(err)
	}
	guest := <-accepted
	defer guest.Close()
	// The guest's ready frame came in the same write as the OK line: it
	// must be the first thing on the connection.
	ready := make([]byte, len(DefaultReady()))
	if _, err := io.ReadFull(conn, ready); err != nil || !bytes.Equal(ready, DefaultReady()) {
		t.Fatalf("first bytes after the handshake: %q, %v", ready, err)
	}
	exercisePump(t, conn, guest)
}

func TestDialVsockRejects(t *testing.T) {
	for _, reply := range []string{"ERR no listener\n", "OK\n", "OK abc\n", "HELLO 5\n", strings.Repeat("x", 100)} {
		t.Run(strings.TrimSpace(reply[:min(len(reply), 12)]), func(t *testing.T) {
			path := sockPath(t, "v.sock")
			fakeVsock(t, path, "52", func(int) string { return reply })
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			_, err := DialVsock(ctx, path, 52)
			if err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("DialVsock: %v, want an immediate protocol error", err)
			}
			if time.Since(start) > 2*time.Second {
				t.Fatal("DialVsock retried a protocol error")
			}
		})
	}
}

func TestDialVsockGivesUp(t *testing.T) {
	path := sockPath(t, "v.sock")
	fakeVsock(t, path, "7", func(int) string { return "" })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := DialVsock(ctx, path, 7)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "port 7") {
		t.Fatalf("DialVsock: %v", err)
	}
}

func TestParseVsockReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		port uint32
		ok   bool
	}{
		{"OK 1073741824\n", 1073741824, true},
		{"OK 0\n", 0, true},
		{"OK 4294967295\n", 4294967295, true},
		{"OK 4294967296\n", 0, false},
		{"OK 99999999999\n", 0, false},
		{"OK 12", 0, false},
		{"OK \n", 0, false},
		{"OK\n", 0, false},
		{"OK 1 2\n", 0, false},
		{"OK -1\n", 0, false},
		{"ok 5\n", 0, false},
		{"", 0, false},
		{"OK 5\r\n", 0, false},
	} {
		port, err := ParseVsockReply([]byte(tc.in))
		if (err == nil) != tc.ok || port != tc.port {
			t.Errorf("ParseVsockReply(%q) = %d, %v", tc.in, port, err)
		}
	}
}

func TestPumpHostCloses(t *testing.T) {
	conn, guest := net.Pipe()
	c := newConsole(t, 4<<10)
	defer c.Close()
	pumped := make(chan error, 1)
	go func() { pumped <- Pump(context.Background(), conn, c) }()
	c.Rx.WriteAll([]byte("last words"), time.Now().Add(5*time.Second))
	c.Rx.CloseWrite()
	// What was in Rx reaches the guest, then the connection closes.
	got, err := io.ReadAll(guest)
	if string(got) != "last words" || err != nil {
		t.Fatalf("guest read %q, %v", got, err)
	}
	if err := <-pumped; err != nil {
		t.Fatalf("Pump: %v", err)
	}
	wantTxEOF(t, c)
}

func TestPumpContext(t *testing.T) {
	conn, guest := net.Pipe()
	defer guest.Close()
	c := newConsole(t, 4<<10)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	pumped := make(chan error, 1)
	go func() { pumped <- Pump(ctx, conn, c) }()
	// Rx→conn is stuck in a write nobody reads: cancel must still end it.
	c.Rx.WriteAll([]byte("unread"), time.Now().Add(5*time.Second))
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-pumped:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Pump: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pump did not return after cancel")
	}
	wantTxEOF(t, c)
}

func TestStart(t *testing.T) {
	t.Run("echo", func(t *testing.T) {
		c := newConsole(t, 0)
		defer c.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := Start(ctx, Spec{Kind: KindEcho}, c, Options{})
		if got := readTx(t, c, len(DefaultReady())); !bytes.Equal(got, DefaultReady()) {
			t.Fatal("no ready frame")
		}
		f := frame.AppendFrame(nil, 3, 0, []byte("x"))
		c.Rx.WriteAll(f, time.Time{})
		if got := readTx(t, c, len(f)); !bytes.Equal(got, f) {
			t.Fatal("not echoed")
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	})
	t.Run("builtin", func(t *testing.T) {
		c := newConsole(t, 0)
		done := Start(context.Background(), Spec{Kind: KindBuiltin}, c, Options{})
		sc := frame.NewScanner(2 * frame.MaxFrame)
		if m := nextTx(t, c, sc); m.Type != frame.TypeReady {
			t.Fatalf("first frame %s, want core.ready", m.TypeName)
		}
		req, _ := frame.AppendMessage(nil, 1, frame.TypeExecRequest, frame.ExecRequest{Cmd: "sh", Args: []string{"-c", "exit 3"}})
		if err := c.Rx.WriteAll(req, time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		for {
			m := nextTx(t, c, sc)
			if m.Type != frame.TypeExecExited {
				continue
			}
			var x frame.ExecExited
			if err := m.Into(&x); err != nil || x.Code != 3 {
				t.Fatalf("builtin exec: exited %+v %v, want code 3", x, err)
			}
			break
		}
		c.Rx.CloseWrite()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unix dial timeout", func(t *testing.T) {
		c := newConsole(t, 0)
		defer c.Close()
		done := Start(context.Background(), Spec{Kind: KindUnix, Path: sockPath(t, "none")}, c, Options{DialTimeout: 50 * time.Millisecond})
		if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Start: %v", err)
		}
		wantTxEOF(t, c) // the relay is not left waiting for a ready frame
	})
	t.Run("vsock", func(t *testing.T) {
		path := sockPath(t, "v.sock")
		accepted := fakeVsock(t, path, "9", func(int) string { return "OK 1073741824\n" })
		c := newConsole(t, 0)
		defer c.Close()
		done := Start(context.Background(), Spec{Kind: KindVsock, Path: path, Port: 9}, c, Options{})
		guest := <-accepted
		if got := readTx(t, c, len(DefaultReady())); !bytes.Equal(got, DefaultReady()) {
			t.Fatal("no ready frame")
		}
		guest.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
