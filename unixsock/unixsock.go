package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxPathLen is the longest socket path the kernel takes: sun_path is 108
// bytes on Linux and must hold the terminating NUL.
const MaxPathLen = len(unix.RawSockaddrUnix{}.Path) - 1

// ErrInUse says a server accepts connections on the socket.
var ErrInUse = errors.New("socket in use by a running relay")

// CheckPath checks that path can name a socket: not empty and short enough
// for sun_path. Longer paths fail in bind with a bare EINVAL.
func CheckPath(path string) error {
	if path == "" {
		return errors.New("empty socket path")
	}
	if len(path) > MaxPathLen {
		return fmt.Errorf("socket path %s is %d bytes, over the %d-byte limit of a Unix socket address; use a shorter path", path, len(path), MaxPathLen)
	}
	return nil
}

// CheckDir checks that only the server can change what dir holds: dir is a
// directory owned by the effective uid or root, and neither group nor others
// may write to it. Otherwise its owner or its writers could replace the
// socket with their own and receive every client. For the same reason a
// symbolic link as dir must be the server's or root's, and dir's parent must
// be theirs and not let others rename dir away (writable by them without
// the sticky bit that /tmp has).
func CheckDir(dir string) error {
	euid := uint32(os.Geteuid())
	if li, err := os.Lstat(dir); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		if uid := owner(li); uid != euid && uid != 0 {
			return fmt.Errorf("socket directory %s is a symbolic link owned by uid %d, not by this process's uid %d or root; its owner could point it elsewhere", dir, uid, euid)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("socket directory %s is not a directory", dir)
	}
	if uid := owner(fi); uid != euid && uid != 0 {
		return fmt.Errorf("socket directory %s is owned by uid %d, not by this process's uid %d or root; use a directory you own", dir, uid, euid)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("socket directory %s is writable by group or others (mode %#o); use a private directory", dir, perm)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if parent := filepath.Dir(abs); parent != abs {
		return checkParent(parent, dir)
	}
	return nil
}

// checkParent checks that parent, which holds the socket directory dir (or
// will once it is created), lets no one but the server or root rename dir
// away: owned by one of them, and writable by no one else unless sticky.
func checkParent(parent, dir string) error {
	pi, err := os.Stat(parent)
	if err != nil {
		return fmt.Errorf("socket directory's parent: %w", err)
	}
	euid := uint32(os.Geteuid())
	if uid := owner(pi); uid != euid && uid != 0 {
		return fmt.Errorf("%s, the parent of socket directory %s, is owned by uid %d, not by this process's uid %d or root; its owner could replace the directory", parent, dir, uid, euid)
	}
	if pi.Mode().Perm()&0o022 != 0 && pi.Mode()&fs.ModeSticky == 0 {
		return fmt.Errorf("%s, the parent of socket directory %s, is writable by group or others without the sticky bit (mode %#o); they could replace the directory", parent, dir, pi.Mode().Perm())
	}
	return nil
}

// checkMissing checks where a missing socket directory dir would be
// created: the closest existing ancestor must pass checkParent.
func checkMissing(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			return checkParent(p, dir)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("socket directory: %w", err)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// owner is the uid owning the file fi describes.
func owner(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return ^uint32(0)
}

// Probe looks at what is at path. stale is true for a socket whose server
// is gone (a connect is refused), which may be replaced. The error wraps
// ErrInUse when a connect succeeds, and says why when path is not a socket
// or cannot be probed; nothing at path is stale false and no error.
func Probe(path string) (stale bool, err error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return false, fmt.Errorf("%s exists and is not a socket", path)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("probe %s: %w", path, err)
	}
	defer unix.Close(fd)
	switch err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err {
	case nil, unix.EAGAIN, unix.EINPROGRESS:
		// EAGAIN: a listener whose backlog is full, which is alive too.
		return false, fmt.Errorf("%s: %w", path, ErrInUse)
	case unix.ECONNREFUSED:
		return true, nil
	case unix.ENOENT:
		return false, nil // removed meanwhile
	default:
		return false, fmt.Errorf("probe %s: %w", path, err)
	}
}

// Check runs every test Listen makes, creating nothing: the path's length,
// the directory's owner and mode if it exists, else those of the ancestor
// Listen would create it in (0700, with its parents), and that no live
// server holds the socket.
func Check(path string) error {
	if err := CheckPath(path); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return checkMissing(dir)
	}
	if err := CheckDir(dir); err != nil {
		return err
	}
	_, err := Probe(path)
	return err
}

// Listen creates a listening socket at path: non-blocking, close-on-exec,
// mode 0600 whatever the umask, in a directory that passes CheckDir
// (created 0700 with its parents if missing). The mode is set between bind
// and listen, when no one can connect yet, so there is no window in which
// the socket is open to others. A stale socket at path is replaced; a live
// one is left alone and ErrInUse returned.
func Listen(path string) (int, error) {
	if err := CheckPath(path); err != nil {
		return -1, err
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := checkMissing(dir); err != nil {
			return -1, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return -1, fmt.Errorf("socket directory: %w", err)
	}
	if err := CheckDir(dir); err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	if err == unix.EADDRINUSE {
		// Replace the file only once the probe says its server is gone;
		// binding first means a missing file is never probed or removed.
		var stale bool
		if stale, err = Probe(path); err == nil {
			if stale {
				if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					unix.Close(fd)
					return -1, fmt.Errorf("remove stale socket: %w", err)
				}
			}
			err = unix.Bind(fd, &unix.SockaddrUnix{Name: path})
		}
	}
	if err != nil {
		unix.Close(fd)
		if errors.Is(err, ErrInUse) {
			return -1, err
		}
		return -1, fmt.Errorf("bind %s: %w", path, err)
	}
	fail := func(what string, err error) (int, error) {
		unix.Close(fd)
		os.Remove(path)
		return -1, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if err := unix.Chmod(path, 0o600); err != nil {
		return fail("chmod", err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		return fail("listen", err)
	}
	return fd, nil
}
