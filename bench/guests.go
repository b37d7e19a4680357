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

// EchoGuests is a running many-guest echo process: one, unless
// RLIMIT_NOFILE cannot be raised far enough for every guest's listener and
// connection, in which case the guests are spread over as few processes as
// the limit allows (the daemon's own limit is the one under test).
type EchoGuests struct {
	Paths []string
	procs []*guestProc
}

type guestProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// guestsStartTimeout bounds how long the process may take to listen on
// every path (10,000 take about a second).
const guestsStartTimeout = 60 * time.Second

// guestsPerProcess is how many guests one process can hold with the
// descriptor limit this process has (and its children inherit): a listener
// and a connection each, and a margin.
func guestsPerProcess() int {
	lim, err := RaiseFileLimit()
	if err != nil || lim.Cur < 256 {
		return 64
	}
	return int(lim.Cur-64) / 2
}

// StartEchoGuests starts self (an executable that runs ServeEchoGuests when
// EchoGuestsEnv is set: the benchmark binary) with extraEnv, serving n
// guests at dir/g0.sock … dir/g<n-1>.sock, and returns once all of them
// listen, or with the process's own account of why it could not.
func StartEchoGuests(self, dir string, n int, extraEnv ...string) (*EchoGuests, error) {
	g := &EchoGuests{}
	for i := range n {
		g.Paths = append(g.Paths, filepath.Join(dir, fmt.Sprintf("g%d.sock", i)))
	}
	per := guestsPerProcess()
	for k := 0; k*per < n; k++ {
		paths := g.Paths[k*per : min(n, (k+1)*per)]
		p, err := startGuestProc(self, filepath.Join(dir, fmt.Sprintf("guests%d", k)), paths, extraEnv)
		if p != nil {
			g.procs = append(g.procs, p)
		}
		if err != nil {
			g.Stop()
			return nil, err
		}
	}
	return g, nil
}

// startGuestProc starts one process serving paths, its list and log at
// base.list and base.log.
func startGuestProc(self, base string, paths, extraEnv []string) (*guestProc, error) {
	listPath := base + ".list"
	if err := os.WriteFile(listPath, []byte(strings.Join(paths, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	p := &guestProc{log: base + ".log", cmd: exec.Command(self)}
	p.cmd.Env = append(append(os.Environ(), EchoGuestsEnv+"="+listPath), extraEnv...)
	out, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer out.Close()
	p.cmd.Stdout = w
	done, err := startLogged(p.cmd, p.log)
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("bench: start the echo guests: %w", err)
	}
	p.exited = done
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if strings.HasPrefix(s, guestsListening+" ") {
			return p, nil
		}
		<-done
		return p, fmt.Errorf("bench: the echo guests exited: %s", logTail(p.log))
	case <-time.After(guestsStartTimeout):
		return p, fmt.Errorf("bench: the echo guests do not listen on %d paths after %v: %s", len(paths), guestsStartTimeout, logTail(p.log))
	}
}

// Alive reports whether every process still runs.
func (g *EchoGuests) Alive() bool {
	for _, p := range g.procs {
		select {
		case <-p.exited:
			return false
		default:
		}
	}
	return true
}

// Pids are the processes' ids.
func (g *EchoGuests) Pids() []int {
	var pids []int
	for _, p := range g.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	return pids
}

// LogTail returns the last lines each process wrote, for error messages.
func (g *EchoGuests) LogTail() string {
	var tails []string
	for _, p := range g.procs {
		tails = append(tails, logTail(p.log))
	}
	return strings.Join(tails, "\n")
}

// Stop ends the processes.
func (g *EchoGuests) Stop() error {
	var errs []error
	for _, p := range g.procs {
		errs = append(errs, stop(p.cmd, p.exited, "the echo guests"))
	}
	return errors.Join(errs...)
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
