package bench

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/agentrelay/agentrelay/bench/kcount"
)

// The targets a workload runs against.
const (
	Reactor   = "reactor"   // bin/relay
	Goroutine = "goroutine" // bin/relay-baseline
	Floor     = "floor"     // ServeFloor: a bare Unix-socket echo, the in-process path's floor
	// Forwarder is the socket-guest path's floor: csrc/fwd.c forwarding
	// bytes between one client and the external echo guest.
	Forwarder = "forwarder"
	// FrameForwarder is the same forwarder, frame-aware (fwd -f): whole
	// frames to the guest, guest frames routed by id range, for fan-in.
	FrameForwarder = "framefwd"
)

// Where the relays' guest runs: the path a workload measures.
const (
	// InProcess: --guest echo, the relay's own echo goroutine on its
	// console rings.
	InProcess = ""
	// UnixGuest: --guest unix:PATH, an external echo guest process
	// (ServeEchoGuest) on a listening Unix socket, as a VMM's console is
	// reached.
	UnixGuest = "unix"
)

// RelayProcsEnv, when set, is the GOMAXPROCS the relays run with (the
// benchmark binary itself keeps its own): for A/B runs of the runtime's
// settings.
const RelayProcsEnv = "RELAY_GOMAXPROCS"

// Config says how to start a target.
type Config struct {
	Impl      string // Reactor, Goroutine, Floor, Forwarder or FrameForwarder
	Guest     string // InProcess or UnixGuest; Forwarder and FrameForwarder need UnixGuest
	Relay     string // path of bin/relay or bin/relay-baseline, for the relays
	Self      string // path of an executable that serves ServeFloor when FloorEnv is set, ServeEchoGuest when EchoGuestEnv is
	Forwarder string // path of the compiled forwarder (BuildForwarder)
	Dir       string // where the sockets, the logs and exec.log go
	ExecLog   bool   // run the relay with --exec-log Dir/<name>
	Wide      bool   // run the relay with --handshake 0.5 (128 slots)
}

// Name is the target's name in file names and in the registry of running
// targets.
func (c Config) Name() string {
	name := c.Impl
	if c.Guest == UnixGuest && (c.Impl == Reactor || c.Impl == Goroutine) {
		name += "-unix"
	}
	if c.ExecLog {
		name += "-execlog"
	}
	if c.Wide {
		name += "-0.5"
	}
	return name
}

// Target is one running target process (a relay, the floor or a
// forwarder) and, on the socket-guest path, its external echo guest.
type Target struct {
	Config
	Socket       string
	DebugAddr    string // the relay's --debug-addr; empty for the floors
	LogPath      string // the process's stdout and stderr
	GuestSocket  string // the external echo guest's socket; empty in process
	GuestLogPath string
	KernelErr    error // why syscalls and switches are not counted, if not

	cmd       *exec.Cmd // nil for a process started by someone else (AttachTo)
	pid       int
	exited    chan struct{}
	guest     *exec.Cmd // the external echo guest, or nil
	guestDone chan struct{}
	kc        *kcount.Counter
	fetchCost uint64 // heap allocations one /debug/vars request itself makes
}

// startTimeout bounds how long a target may take to accept its first client.
const startTimeout = 20 * time.Second

// Start starts the target (after its echo guest, if it has one) and
// returns once it has completed a handshake.
func Start(cfg Config) (*Target, error) {
	name := cfg.Name()
	t := &Target{
		Config:  cfg,
		Socket:  filepath.Join(cfg.Dir, name+".sock"),
		LogPath: filepath.Join(cfg.Dir, name+".log"),
	}
	switch cfg.Guest {
	case InProcess:
		if cfg.Impl == Forwarder || cfg.Impl == FrameForwarder {
			return nil, fmt.Errorf("bench: %s needs the %s guest", cfg.Impl, UnixGuest)
		}
	case UnixGuest:
		if cfg.Impl == Floor {
			return nil, fmt.Errorf("bench: %s has no guest to put behind it", cfg.Impl)
		}
		t.GuestSocket = filepath.Join(cfg.Dir, name+"-guest.sock")
		t.GuestLogPath = filepath.Join(cfg.Dir, name+"-guest.log")
	default:
		return nil, fmt.Errorf("bench: unknown guest %q", cfg.Guest)
	}
	var cmd *exec.Cmd
	switch cfg.Impl {
	case Floor:
		cmd = exec.Command(cfg.Self)
		cmd.Env = append(os.Environ(), FloorEnv+"="+t.Socket)
	case Forwarder:
		cmd = exec.Command(cfg.Forwarder, t.Socket, t.GuestSocket)
	case FrameForwarder:
		cmd = exec.Command(cfg.Forwarder, "-f", t.Socket, t.GuestSocket)
	case Reactor, Goroutine:
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		t.DebugAddr = addr
		spec := "echo"
		if cfg.Guest == UnixGuest {
			spec = "unix:" + t.GuestSocket
		}
		args := []string{"serve", "--socket", t.Socket, "--guest", spec,
			"--debug-addr", addr, "--ready-timeout", "10s"}
		if cfg.ExecLog {
			dir := filepath.Join(cfg.Dir, name)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
			args = append(args, "--exec-log", dir)
		}
		if cfg.Wide {
			args = append(args, "--handshake", "0.5")
		}
		cmd = exec.Command(cfg.Relay, args...)
		if v := os.Getenv(RelayProcsEnv); v != "" {
			cmd.Env = append(os.Environ(), "GOMAXPROCS="+v)
		}
	default:
		return nil, fmt.Errorf("bench: unknown target %q", cfg.Impl)
	}
	if t.GuestSocket != "" {
		// Started first: the relay and the forwarder retry their dial
		// until it listens.
		g := exec.Command(cfg.Self)
		g.Env = append(os.Environ(), EchoGuestEnv+"="+t.GuestSocket)
		done, err := startLogged(g, t.GuestLogPath)
		if err != nil {
			return nil, fmt.Errorf("bench: start the echo guest of %s: %w", name, err)
		}
		t.guest, t.guestDone = g, done
	}
	done, err := startLogged(cmd, t.LogPath)
	if err != nil {
		t.Stop()
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	t.cmd, t.pid, t.exited = cmd, cmd.Process.Pid, done
	if err := t.setUp(); err != nil {
		t.Stop()
		return nil, err
	}
	return t, nil
}

// startLogged starts cmd with its output (stderr only, if its stdout is
// taken) in the file at logPath and returns
// a channel closed when it has exited.
func startLogged(cmd *exec.Cmd, logPath string) (chan struct{}, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	if cmd.Stdout == nil {
		cmd.Stdout = logf
	}
	cmd.Stderr = logf
	// No process may outlive the benchmark if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	return done, nil
}

// AttachTo measures a target someone else started (scripts/profile.sh
// does, to profile it while a workload runs): a relay serving socket, with
// its debug endpoint on debugAddr, as process pid. Stop leaves it running.
func AttachTo(impl, socket, debugAddr string, pid int) (*Target, error) {
	t := &Target{Config: Config{Impl: impl}, Socket: socket, DebugAddr: debugAddr, pid: pid}
	if err := t.setUp(); err != nil {
		t.Stop()
		return nil, err
	}
	return t, nil
}

func (t *Target) setUp() error {
	if err := t.waitReady(); err != nil {
		return err
	}
	if t.DebugAddr != "" {
		if err := t.calibrate(); err != nil {
			return err
		}
	}
	var err error
	if t.kc, err = kcount.Attach(t.pid); err != nil {
		t.KernelErr = err
		if !errors.Is(err, kcount.ErrUnavailable) {
			return err
		}
	}
	return nil
}

// Pid is the target's process id.
func (t *Target) Pid() int { return t.pid }

// Alive reports whether the process is still running.
func (t *Target) Alive() bool {
	if t.cmd == nil {
		return syscall.Kill(t.pid, 0) == nil
	}
	select {
	case <-t.exited:
		return false
	default:
		return true
	}
}

func (t *Target) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := Dial(t.Socket)
		if err == nil {
			return c.Close()
		}
		if !t.Alive() {
			return fmt.Errorf("bench: %s exited before serving: %s", t.Name(), t.LogTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s not serving after %v: %w: %s", t.Name(), startTimeout, err, t.LogTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// calibrate measures what a /debug/vars request allocates in the target, to
// take it out of every Begin/End pair.
func (t *Target) calibrate() error {
	var prev uint64
	t.fetchCost = ^uint64(0)
	for i := range 10 {
		m, err := Mallocs(t.DebugAddr)
		if err != nil {
			return err
		}
		if i > 0 {
			t.fetchCost = min(t.fetchCost, m-prev)
		}
		prev = m
	}
	return nil
}

// Begin reads the target's usage at the start of a measurement: allocations
// first, so that the request for them falls outside the CPU and kernel
// counts.
func (t *Target) Begin() (Usage, error) {
	var u Usage
	var err error
	if t.DebugAddr != "" {
		if u.Mallocs, err = Mallocs(t.DebugAddr); err != nil {
			return u, err
		}
		u.HasMallocs = true
	}
	return u, t.readProc(&u)
}

// End reads the target's usage at the end of a measurement, in the reverse
// order of Begin. Its Mallocs already has the cost of one request taken out,
// so End().Sub(Begin()) is what happened in between.
func (t *Target) End() (Usage, error) {
	var u Usage
	if err := t.readProc(&u); err != nil {
		return u, err
	}
	if t.DebugAddr != "" {
		m, err := Mallocs(t.DebugAddr)
		if err != nil {
			return u, err
		}
		u.Mallocs, u.HasMallocs = m-t.fetchCost, true
	}
	return u, nil
}

func (t *Target) readProc(u *Usage) error {
	var err error
	if t.kc != nil {
		k, err := t.kc.Read()
		if err != nil {
			return err
		}
		u.Syscalls, u.Switches, u.HasKernel = k.Syscalls, k.Switches, true
	}
	if u.CPU, err = ProcCPU(t.Pid()); err != nil {
		return err
	}
	if t.guest != nil {
		if u.GuestCPU, err = ProcCPU(t.guest.Process.Pid); err != nil {
			return err
		}
		u.HasGuest = true
	}
	return nil
}

// Stop ends the process and its echo guest (SIGTERM, then SIGKILL after
// 5 s) and the counting.
func (t *Target) Stop() error {
	if t.kc != nil {
		t.kc.Close()
		t.kc = nil
	}
	var err error
	if t.cmd != nil {
		err = stop(t.cmd, t.exited, t.Name())
	}
	if t.guest != nil {
		err = errors.Join(err, stop(t.guest, t.guestDone, t.Name()+"'s echo guest"))
	}
	return err
}

func stop(cmd *exec.Cmd, exited chan struct{}, name string) error {
	select {
	case <-exited:
		return nil
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("bench: %s ignored SIGTERM for 5 s", name)
	}
	return nil
}

// LogTail returns the last lines the process (and its echo guest) wrote,
// for error messages.
func (t *Target) LogTail() string {
	if t.LogPath == "" {
		return "(no log: not started here)"
	}
	tail := logTail(t.LogPath)
	if t.GuestLogPath != "" {
		tail += "\necho guest: " + logTail(t.GuestLogPath)
	}
	return tail
}

func logTail(path string) string {
	b, _ := os.ReadFile(path)
	b = bytes.TrimSpace(b)
	lines := strings.Split(string(b), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}

// freeLoopbackAddr picks a free TCP port on 127.0.0.1 for a debug endpoint.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Autopsy is for a target that stopped answering: it records the state and
// kernel wait channel of each of its threads, sends it SIGQUIT (a Go
// process then prints every goroutine's stack and exits) and keeps its log
// in a file that outlives the run. It returns what it found and where the
// log went.
func (t *Target) Autopsy() string {
	var b strings.Builder
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", t.pid))
	for _, task := range tasks {
		stat, _ := os.ReadFile(task + "/stat")
		wchan, _ := os.ReadFile(task + "/wchan")
		state := "?"
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			state = string(stat[i+2])
		}
		fmt.Fprintf(&b, "thread %s: %s %s\n", filepath.Base(task), state, wchan)
	}
	if t.cmd == nil || t.LogPath == "" {
		return b.String()
	}
	t.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-t.exited:
	case <-time.After(3 * time.Second):
	}
	logb, err := os.ReadFile(t.LogPath)
	if err != nil {
		return b.String()
	}
	keep := filepath.Join(os.TempDir(), fmt.Sprintf("relaybench-%s-%s.log", t.Name(), time.Now().Format("20060102T150405")))
	if err := os.WriteFile(keep, logb, 0o600); err == nil {
		fmt.Fprintf(&b, "goroutine dump (SIGQUIT) and log kept in %s\n", keep)
	}
	return b.String()
}
