package unixsock_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/unixsock"
)

func privateDir(t *testing.T) string {
	d := t.TempDir()
	if err := os.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCheckPathLength(t *testing.T) {
	dir := privateDir(t)
	pad := func(n int) string { // a path of exactly n bytes in dir
		return filepath.Join(dir, strings.Repeat("s", n-len(dir)-1))
	}
	if err := unixsock.CheckPath(pad(unixsock.MaxPathLen)); err != nil {
		t.Fatalf("%d bytes refused: %v", unixsock.MaxPathLen, err)
	}
	fd, err := unixsock.Listen(pad(unixsock.MaxPathLen))
	if err != nil {
		t.Fatalf("the kernel limit is not %d bytes: %v", unixsock.MaxPathLen, err)
	}
	unix.Close(fd)
	long := filepath.Join(dir, "sub", strings.Repeat("s", unixsock.MaxPathLen))
	for _, f := range []func(string) error{unixsock.CheckPath, unixsock.Check, func(p string) error { _, err := unixsock.Listen(p); return err }} {
		if err := f(long); err == nil || !strings.Contains(err.Error(), "limit") {
			t.Fatalf("over-long path: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Dir(long)); !os.IsNotExist(err) {
		t.Fatalf("directory created for an over-long path: %v", err)
	}
}

func TestCheckDirOwnerAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another uid")
	}
	base := privateDir(t)
	other := filepath.Join(base, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(other, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(other, "agent.sock")
	for name, f := range map[string]func() error{
		"CheckDir": func() error { return unixsock.CheckDir(other) },
		"Check":    func() error { return unixsock.Check(sock) },
		"Listen":   func() error { _, err := unixsock.Listen(sock); return err },
	} {
		if err := f(); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Fatalf("%s on a directory of uid 65534: %v", name, err)
		}
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket created: %v", err)
	}
	if err := os.Chown(other, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := unixsock.CheckDir(other); err != nil {
		t.Fatalf("root-owned 0755 directory refused: %v", err)
	}
	for _, mode := range []os.FileMode{0o775, 0o757, 0o777 | os.ModeSticky} {
		if err := os.Chmod(other, mode); err != nil {
			t.Fatal(err)
		}
		if err := unixsock.CheckDir(other); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
			t.Fatalf("mode %v: %v", mode, err)
		}
	}
}

func TestListenReplacesOnlyStaleSockets(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(privateDir(t), "new", "dir")
	sock := filepath.Join(dir, "agent.sock")
	if err := unixsock.Check(sock); err != nil {
		t.Fatalf("missing directory: %v", err)
	}
	fd, err := unixsock.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, sock: 0o600 | os.ModeSocket} {
		if fi, err := os.Lstat(path); err != nil || fi.Mode() != want {
			t.Fatalf("%s: mode %v (%v), want %v", path, fi.Mode(), err, want)
		}
	}
	ino := func() uint64 {
		fi, err := os.Lstat(sock)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	live := ino()

	// Live: refused by every entry point, the socket untouched and serving.
	if stale, err := unixsock.Probe(sock); stale || !errors.Is(err, unixsock.ErrInUse) {
		t.Fatalf("Probe of a live socket: stale %v, %v", stale, err)
	}
	if err := unixsock.Check(sock); !errors.Is(err, unixsock.ErrInUse) {
		t.Fatalf("Check of a live socket: %v", err)
	}
	if _, err := unixsock.Listen(sock); !errors.Is(err, unixsock.ErrInUse) || !strings.Contains(err.Error(), "socket in use by a running relay") {
		t.Fatalf("Listen on a live socket: %v", err)
	}
	if ino() != live {
		t.Fatal("the live socket was replaced")
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the live socket stopped serving: %v", err)
	}
	c.Close()

	// Stale: its server closed without removing it.
	unix.Close(fd)
	if stale, err := unixsock.Probe(sock); !stale || err != nil {
		t.Fatalf("Probe of a stale socket: stale %v, %v", stale, err)
	}
	if err := unixsock.Check(sock); err != nil {
		t.Fatalf("Check of a stale socket: %v", err)
	}
	fd, err = unixsock.Listen(sock)
	if err != nil {
		t.Fatalf("Listen on a stale socket: %v", err)
	}
	defer unix.Close(fd)
	c, err = net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("the replacement does not serve: %v", err)
	}
	c.Close()
	if _, _, err := unix.Accept(fd); err != nil {
		t.Fatalf("the connection did not reach the new listener: %v", err)
	}
}

func TestNotASocket(t *testing.T) {
	path := filepath.Join(privateDir(t), "file")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := unixsock.Listen(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
	if err := unixsock.Check(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Check of a regular file: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
		t.Fatalf("the file was changed: %q %v", b, err)
	}
}

// TestProbeFullBacklog: a live server whose backlog is full refuses a
// non-blocking connect with EAGAIN, not ECONNREFUSED; it is still in use.
func TestProbeFullBacklog(t *testing.T) {
	sock := filepath.Join(privateDir(t), "busy.sock")
	fd, err := unixsock.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	full := false
	for range 4096 {
		c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(c)
		if err := unix.Connect(c, &unix.SockaddrUnix{Name: sock}); err == unix.EAGAIN {
			full = true
			break
		} else if err != nil {
			t.Fatalf("connect: %v", err)
		}
	}
	if !full {
		t.Fatal("the backlog never filled")
	}
	if stale, err := unixsock.Probe(sock); stale || !errors.Is(err, unixsock.ErrInUse) {
		t.Fatalf("Probe with a full backlog: stale %v, %v", stale, err)
	}
}

// TestCheckDirSwappable: a directory that is safe in itself is refused when
// someone else could swap it: through a symbolic link they own, or by
// renaming it in a parent they own or may write to. A sticky parent (/tmp)
// is fine.
func TestCheckDirSwappable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a link to another uid")
	}
	base := privateDir(t)
	mine := filepath.Join(base, "mine")
	if err := os.Mkdir(mine, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(mine, link); err != nil {
		t.Fatal(err)
	}
	if err := unixsock.CheckDir(link); err != nil {
		t.Fatalf("our own link refused: %v", err)
	}
	if err := os.Lchown(link, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := unixsock.CheckDir(link); err == nil || !strings.Contains(err.Error(), "symbolic link owned by uid 65534") {
		t.Fatalf("a link of uid 65534: %v", err)
	}
	if _, err := unixsock.Listen(filepath.Join(link, "agent.sock")); err == nil {
		t.Fatal("Listen through a link of uid 65534")
	}

	for mode, ok := range map[os.FileMode]bool{0o777: false, 0o775: false, 0o777 | os.ModeSticky: true, 0o755: true} {
		if err := os.Chmod(base, mode); err != nil {
			t.Fatal(err)
		}
		err := unixsock.CheckDir(mine)
		if ok && err != nil {
			t.Fatalf("parent mode %v: %v", mode, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "without the sticky bit")) {
			t.Fatalf("parent mode %v: %v", mode, err)
		}
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}

	// A parent of another uid, the directory existing or not.
	theirs := filepath.Join(base, "theirs")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(theirs, "ours")
	if err := os.Mkdir(ours, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := unixsock.CheckDir(ours); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("a directory in a parent of uid 65534: %v", err)
	}
	missing := filepath.Join(theirs, "new", "dir", "agent.sock")
	if err := unixsock.Check(missing); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("Check of a directory to be created in one of uid 65534: %v", err)
	}
	if _, err := unixsock.Listen(missing); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("Listen in a directory to be created in one of uid 65534: %v", err)
	}
	if _, err := os.Stat(filepath.Join(theirs, "new")); !os.IsNotExist(err) {
		t.Fatalf("directory created: %v", err)
	}
}
