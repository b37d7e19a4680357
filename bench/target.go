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
	Reactor   = "reactor"   // bin/relay --guest echo
	Goroutine = "goroutine" // bin/relay-baseline --guest echo
	Floor     = "floor"     // ServeFloor: a bare Unix-socket echo
)

// Config says how to start a target.
type Config struct {
	Impl    string // Reactor, Goroutine or Floor
	Relay   string // path of bin/relay or bin/relay-baseline, for the relays
	Floor   string // path of an executable that calls ServeFloor when FloorEnv is set
	Dir     string // where the socket, the log and exec.log go
	ExecLog bool   // run the relay with --exec-log Dir/<name>-execlog
}

// Name is the target's name in benchmark names and file names.
func (c Config) Name() string {
	if c.ExecLog {
		return c.Impl + "-execlog"
	}
	return c.Impl
}

// Target is one running target process: a relay with the echo guest, or the
// floor.
type Target struct {
	Config
	Socket    string
	DebugAddr string // the relay's --debug-addr; empty for the floor
	LogPath   string // the process's stdout and stderr
	KernelErr error  // why syscalls and switches are not counted, if not

	cmd       *exec.Cmd // nil for a process started by someone else (AttachTo)
	pid       int
	exited    chan struct{}
	kc        *kcount.Counter
	fetchCost uint64 // heap allocations one /debug/vars request itself makes
}

// startTimeout bounds how long a target may take to accept its first client.
const startTimeout = 20 * time.Second

// Start starts the target and returns once it has completed a handshake.
func Start(cfg Config) (*Target, error) {
	name := cfg.Name()
	t := &Target{
		Config:  cfg,
		Socket:  filepath.Join(cfg.Dir, name+".sock"),
		LogPath: filepath.Join(cfg.Dir, name+".log"),
		exited:  make(chan struct{}),
	}
	var cmd *exec.Cmd
	switch cfg.Impl {
	case Floor:
		cmd = exec.Command(cfg.Floor)
		cmd.Env = append(os.Environ(), FloorEnv+"="+t.Socket)
	case Reactor, Goroutine:
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		t.DebugAddr = addr
		args := []string{"serve", "--socket", t.Socket, "--guest", "echo",
			"--debug-addr", addr, "--ready-timeout", "10s"}
		if cfg.ExecLog {
			dir := filepath.Join(cfg.Dir, name)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, err
			}
			args = append(args, "--exec-log", dir)
		}
		cmd = exec.Command(cfg.Relay, args...)
	default:
		return nil, fmt.Errorf("bench: unknown target %q", cfg.Impl)
	}
	logf, err := os.Create(t.LogPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	// The target must not outlive the benchmark if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	t.cmd, t.pid = cmd, cmd.Process.Pid
	go func() { cmd.Wait(); close(t.exited) }()
	if err := t.setUp(); err != nil {
		t.Stop()
		return nil, err
	}
	return t, nil
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
	u.CPU, err = ProcCPU(t.Pid())
	return err
}

// Stop ends the process (SIGTERM, then SIGKILL after 5 s) and the counting.
func (t *Target) Stop() error {
	if t.kc != nil {
		t.kc.Close()
		t.kc = nil
	}
	if t.cmd == nil || !t.Alive() {
		return nil
	}
	t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.exited:
	case <-time.After(5 * time.Second):
		t.cmd.Process.Kill()
		<-t.exited
		return fmt.Errorf("bench: %s ignored SIGTERM for 5 s", t.Name())
	}
	return nil
}

// LogTail returns the last lines the process wrote, for error messages.
func (t *Target) LogTail() string {
	if t.LogPath == "" {
		return "(no log: not started here)"
	}
	b, _ := os.ReadFile(t.LogPath)
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
