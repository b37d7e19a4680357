package agent

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A Watchdog makes the host-process mode's commands die with the process
// that runs the agent, however it dies: even SIGKILL, after which nothing
// in it runs. It is a small process of its own (the same executable,
// started again in watchdog mode) that learns each command's process group
// or session through a pipe; when the pipe's write end closes, which the
// kernel does when its owner dies, it SIGKILLs every process still in one
// of them, background grandchildren included.
//
// PR_SET_PDEATHSIG alone would kill only the direct child, and a subreaper
// inside the dying process dies with it; hence a process outside.
type Watchdog struct {
	mu  sync.Mutex
	w   *os.File
	cmd *exec.Cmd
}

// watchdogEnv marks the executable's watchdog mode.
const watchdogEnv = "AGENTRELAY_AGENT_WATCHDOG"

func init() {
	if os.Getenv(watchdogEnv) == "1" {
		os.Exit(runWatchdog(os.Stdin))
	}
}

// StartWatchdog starts the watchdog process.
func StartWatchdog() (*Watchdog, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(exe)
	cmd.Env = []string{watchdogEnv + "=1"}
	cmd.Stdin = r
	cmd.Stderr = os.Stderr
	// Its own process group: a terminal's ^C, or a kill of the relay's
	// group, must not take it before it has done its job.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	wd := &Watchdog{w: w, cmd: cmd}
	go cmd.Wait()
	return wd, nil
}

// watch tells the watchdog about a command: its process group (pipe mode)
// or its session (tty mode, where job control gives background jobs
// groups of their own). A nil Watchdog watches nothing.
func (wd *Watchdog) watch(pid int, session bool) {
	if wd == nil {
		return
	}
	kind := "g"
	if session {
		kind = "s"
	}
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.w != nil {
		fmt.Fprintf(wd.w, "%s %d\n", kind, pid)
	}
}

// Close ends the watchdog the way the owner's death would: whatever it
// watches that still runs is killed.
func (wd *Watchdog) Close() error {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.w == nil {
		return nil
	}
	err := wd.w.Close()
	wd.w = nil
	return err
}

// runWatchdog is the watchdog process: it reads "g PGID" and "s SID" lines
// until EOF, then kills. Groups and sessions with no process left are
// forgotten now and then, so that a recycled pid is not taken for one of
// them.
func runWatchdog(in *os.File) int {
	signal.Ignore(unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	var (
		mu       sync.Mutex
		groups   = map[int]bool{}
		sessions = map[int]bool{}
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			kind, n, _ := strings.Cut(sc.Text(), " ")
			id, err := strconv.Atoi(n)
			if err != nil || id <= 1 {
				continue
			}
			mu.Lock()
			if kind == "s" {
				sessions[id] = true
			} else {
				groups[id] = true
			}
			mu.Unlock()
		}
	}()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			mu.Lock()
			live := scanProcs(func(pid, pgrp, sid int) bool { return groups[pgrp] || sessions[sid] })
			prune(groups, live.groups)
			prune(sessions, live.sessions)
			mu.Unlock()
		case <-done:
			mu.Lock()
			defer mu.Unlock()
			killAll(groups, sessions)
			return 0
		}
	}
}

func prune(m map[int]bool, live map[int]bool) {
	for id := range m {
		if !live[id] {
			delete(m, id)
		}
	}
}

type liveSet struct{ groups, sessions map[int]bool }

// scanProcs returns the groups and sessions of the processes match
// accepts, out of /proc.
func scanProcs(match func(pid, pgrp, sid int) bool) liveSet {
	l := liveSet{map[int]bool{}, map[int]bool{}}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		pid, pgrp, sid, err := readStat(p)
		if err != nil || !match(pid, pgrp, sid) {
			continue
		}
		l.groups[pgrp] = true
		l.sessions[sid] = true
	}
	return l
}

// readStat parses pid, pgrp and session out of /proc/PID/stat; the
// command name may hold spaces and parentheses, so fields are counted from
// its last ')'.
func readStat(path string) (pid, pgrp, sid int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp session ...
	if len(f) < 4 {
		return 0, 0, 0, errors.New("malformed stat")
	}
	pid, _ = strconv.Atoi(strings.Fields(s[:i])[0])
	pgrp, _ = strconv.Atoi(f[2])
	sid, _ = strconv.Atoi(f[3])
	return pid, pgrp, sid, nil
}

// killAll SIGKILLs every process in the groups and sessions, until none is
// left (a process may fork while the first round goes on).
func killAll(groups, sessions map[int]bool) {
	self := os.Getpid()
	for round := 0; round < 20; round++ {
		for g := range groups {
			unix.Kill(-g, unix.SIGKILL)
		}
		found := false
		stats, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, p := range stats {
			pid, pgrp, sid, err := readStat(p)
			if err != nil || pid == self || !(groups[pgrp] || sessions[sid]) {
				continue
			}
			if unix.Kill(pid, unix.SIGKILL) == nil {
				found = true
			}
		}
		if !found {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
