package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// EchoGuestsEnv names the environment variable that turns a process started
// by StartEchoGuests into the many-guest echo process (ServeEchoGuests);
// its value is a file listing the guests' socket paths, one a line.
const EchoGuestsEnv = "AGENTRELAY_BENCH_GUESTS"

// NofileCapEnv, when set in a process that calls RaiseFileLimit, caps its
// RLIMIT_NOFILE soft limit at that number instead of raising it: a way to
// see how the harness reports running out of descriptors without opening
// tens of thousands of them.
const NofileCapEnv = "AGENTRELAY_BENCH_NOFILE"

// guestsListening is the line ServeEchoGuests writes once every path
// listens.
const guestsListening = "listening"

// echoBuf is what one active guest connection reads into: an idle one
// holds none (see echoConn).
const echoBuf = 256 << 10

var echoBufs = sync.Pool{New: func() any { b := make([]byte, echoBuf); return &b }}

// RaiseFileLimit raises this process's RLIMIT_NOFILE as far as it may go:
// as root the hard limit up to fs.nr_open, then the soft limit to the hard
// one. Processes started afterwards inherit it. It returns the limit in
// force; an error only if it could not be read or set (a non-root process
// keeps its hard limit without error). NofileCapEnv overrides it.
func RaiseFileLimit() (syscall.Rlimit, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return lim, fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	nrOpen() // while a descriptor is still free to read it with
	if v := os.Getenv(NofileCapEnv); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			return lim, fmt.Errorf("%s=%q: want a positive number", NofileCapEnv, v)
		}
		lim.Cur = min(n, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return lim, fmt.Errorf("RLIMIT_NOFILE: %w", err)
		}
		return lim, nil
	}
	if nrOpen, err := nrOpen(); err == nil && nrOpen > lim.Max {
		want := syscall.Rlimit{Cur: nrOpen, Max: nrOpen}
		// Only root (CAP_SYS_RESOURCE) may raise the hard limit; anyone
		// may raise the soft one up to it, below.
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
			return want, nil
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return lim, fmt.Errorf("RLIMIT_NOFILE: %w", err)
		}
	}
	return lim, nil
}

// nrOpen is fs.nr_open, the most RLIMIT_NOFILE may be raised to, read
// once: a process that has run out of descriptors cannot open /proc.
var nrOpen = sync.OnceValues(func() (uint64, error) { return readUint("/proc/sys/fs/nr_open") })

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// fdError wraps err from what; running out of descriptors (EMFILE, ENFILE)
// gets the limits that were hit, since that, not the operation, is what the
// reader has to change.
func fdError(what string, err error) error {
	switch {
	case errors.Is(err, unix.EMFILE):
		var lim syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		ceiling := "fs.nr_open"
		if n, err := nrOpen(); err == nil {
			ceiling += " " + strconv.FormatUint(n, 10)
		}
		return fmt.Errorf("%s: out of file descriptors: RLIMIT_NOFILE is %d (hard %d); as root the harness raises both to %s: %w",
			what, lim.Cur, lim.Max, ceiling, err)
	case errors.Is(err, unix.ENFILE):
		return fmt.Errorf("%s: the system is out of file descriptors (fs.file-max): %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ServeEchoGuests is the many-guest echo process: one ServeEchoGuest for
// each of paths, all in one process, for benchmarks that give a host daemon
// (or many relays) a guest each. Each path is a listening Unix socket; on
// every connection the guest sends core.ready and reflects every byte.
// Connections are goroutines on Go's netpoller, and an idle one holds no
// buffer: it waits for readability through RawConn and only then takes a
// buffer from a pool, so 10,000 idle guests cost goroutines, not 2.5 GB of
// buffers. It writes guestsListening to ready once every path listens and
// serves until the process is killed; it returns the first error that stops
// a guest, running out of descriptors reported as such.
func ServeEchoGuests(paths []string, ready io.Writer) error {
	hello, err := frame.AppendMessage(nil, 0, frame.TypeReady,
		frame.Ready{BootTimeNs: 118_000_000, InitTimeNs: 4_200_000, ReadyTimeNs: 122_500_000})
	if err != nil {
		return err
	}
	lns := make([]*net.UnixListener, 0, len(paths))
	for i, path := range paths {
		os.Remove(path)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			return fdError(fmt.Sprintf("echo guests: listen on %s (%d of %d)", path, i+1, len(paths)), err)
		}
		lns = append(lns, ln)
	}
	if _, err := fmt.Fprintln(ready, guestsListening, len(lns)); err != nil {
		return err
	}
	errs := make(chan error, 1)
	for _, ln := range lns {
		go func() {
			for {
				c, err := ln.AcceptUnix()
				if err != nil {
					// A guest that cannot accept would leave its sandbox
					// waiting for ready: end the process instead, so that
					// the harness sees why.
					select {
					case errs <- fdError("echo guests: accept on "+ln.Addr().String(), err):
					default:
					}
					return
				}
				go echoConn(c, hello)
			}
		}()
	}
	return <-errs
}

func echoConn(c *net.UnixConn, hello []byte) {
	defer c.Close()
	if _, err := c.Write(hello); err != nil {
		return
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	for {
		var buf *[]byte
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			b := echoBufs.Get().(*[]byte)
			for {
				n, rerr = unix.Read(int(fd), *b)
				if rerr != unix.EINTR {
					break
				}
			}
			if rerr == unix.EAGAIN {
				echoBufs.Put(b)
				return false // park on the netpoller until readable
			}
			buf = b
			return true
		})
		if err != nil || rerr != nil || n <= 0 {
			if buf != nil {
				echoBufs.Put(buf)
			}
			return
		}
		_, err = c.Write((*buf)[:n])
		echoBufs.Put(buf)
		if err != nil {
			return
		}
	}
}

// EchoGuests is a running many-guest echo process.
type EchoGuests struct {
	Paths   []string
	LogPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// guestsStartTimeout bounds how long the process may take to listen on
// every path (10,000 take about a second).
const guestsStartTimeout = 60 * time.Second

// StartEchoGuests starts self (an executable that runs ServeEchoGuests when
// EchoGuestsEnv is set: the benchmark binary) with extraEnv, serving n
// guests at dir/g0.sock … dir/g<n-1>.sock, and returns once all of them
// listen, or with the process's own account of why it could not.
func StartEchoGuests(self, dir string, n int, extraEnv ...string) (*EchoGuests, error) {
	g := &EchoGuests{LogPath: filepath.Join(dir, "guests.log")}
	var list strings.Builder
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("g%d.sock", i))
		g.Paths = append(g.Paths, p)
		list.WriteString(p + "\n")
	}
	listPath := filepath.Join(dir, "guests.list")
	if err := os.WriteFile(listPath, []byte(list.String()), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(append(os.Environ(), EchoGuestsEnv+"="+listPath), extraEnv...)
	out, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout = w
	done, err := startLogged(cmd, g.LogPath)
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("bench: start the echo guests: %w", err)
	}
	g.cmd, g.exited = cmd, done
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if strings.HasPrefix(s, guestsListening+" ") {
			return g, nil
		}
		<-done
		return nil, fmt.Errorf("bench: the echo guests exited: %s", logTail(g.LogPath))
	case <-time.After(guestsStartTimeout):
		g.Stop()
		return nil, fmt.Errorf("bench: the echo guests do not listen on %d paths after %v: %s", n, guestsStartTimeout, logTail(g.LogPath))
	}
}

// Alive reports whether the process still runs.
func (g *EchoGuests) Alive() bool {
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

// Pid is the process's id.
func (g *EchoGuests) Pid() int { return g.cmd.Process.Pid }

// Stop ends the process.
func (g *EchoGuests) Stop() error {
	return stop(g.cmd, g.exited, "the echo guests")
}

// ServeEchoGuestsFromEnv is what the benchmark binary runs when
// EchoGuestsEnv is set: it raises its descriptor limit and serves the
// listed paths, readiness on stdout.
func ServeEchoGuestsFromEnv(listPath string) error {
	b, err := os.ReadFile(listPath)
	if err != nil {
		return fmt.Errorf("echo guests: %w", err)
	}
	paths := strings.Fields(string(b))
	if _, err := RaiseFileLimit(); err != nil {
		return fmt.Errorf("echo guests: %w", err)
	}
	return ServeEchoGuests(paths, os.Stdout)
}
