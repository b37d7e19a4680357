package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/frame"
)

// sockConn is a Conn on one end of a socketpair: a plain byte stream, as
// agentd's virtio-serial port is.
type sockConn struct{ *net.UnixConn }

func socketConn(t *testing.T) (agentSide Conn, host *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	a, h := conv(fds[0]), conv(fds[1])
	t.Cleanup(func() { h.Close() })
	return sockConn{a}, h
}

func readMsg(t *testing.T, sc *frame.Scanner, c net.Conn) frame.Message {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := sc.Next()
		if err == nil {
			m, err := frame.DecodeFrame(f)
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		if err != frame.ErrIncomplete {
			t.Fatal(err)
		}
		n, err := c.Read(sc.Space())
		sc.Commit(n)
		if err != nil {
			t.Fatalf("host read: %v", err)
		}
	}
}

// TestServeConnectionsInTurn is agentd's pattern: one Agent serves one
// connection after another. Each gets core.ready first; a hang-up kills
// that connection's sessions, and nothing of theirs reaches the next.
func TestServeConnectionsInTurn(t *testing.T) {
	ag := New(Options{})
	for round := 0; round < 2; round++ {
		conn, host := socketConn(t)
		done := make(chan error, 1)
		go func() { done <- ag.Serve(context.Background(), conn) }()
		sc := frame.NewScanner(0)
		if m := readMsg(t, sc, host); m.Type != frame.TypeReady {
			t.Fatalf("round %d: first message %v, want core.ready", round, m.TypeName)
		}
		req, _ := frame.AppendMessage(nil, 7, frame.TypeExecRequest, &frame.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo up; sleep 1000 & while :; do echo tick; sleep 0.01; done"}})
		host.Write(req)
		var pid int
		for pid == 0 {
			m := readMsg(t, sc, host)
			if m.Type == frame.TypeExecStarted {
				var p frame.ExecStarted
				mustInto(t, m, &p)
				pid = int(p.Pid)
			}
		}
		readMsg(t, sc, host) // output flows
		host.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: Serve after hang-up: %v", round, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after the hang-up")
		}
		// The process group is dead: the shell and its background
		// sleep (an orphan now: whoever inherited it reaps it).
		deadline := time.Now().Add(5 * time.Second)
		for live := groupMembers(pid); len(live) > 0; live = groupMembers(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: process group %d still running after the hang-up: %v", round, pid, live)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestServeShutdown(t *testing.T) {
	conn, host := socketConn(t)
	done := make(chan error, 1)
	go func() { done <- New(Options{}).Serve(context.Background(), conn) }()
	sc := frame.NewScanner(0)
	readMsg(t, sc, host)
	b, _ := frame.AppendMessage(nil, 0, frame.TypeShutdown, nil)
	host.Write(b)
	select {
	case err := <-done:
		if err != ErrShutdown {
			t.Fatalf("Serve: %v, want ErrShutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no return after core.shutdown")
	}
}

// groupMembers lists the live (not zombie) processes of group pgid.
func groupMembers(pgid int) []int {
	var live []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		pid, pgrp, _, err := readStat(p)
		if err != nil || pgrp != pgid {
			continue
		}
		b, _ := os.ReadFile(p)
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] != "Z" {
			live = append(live, pid)
		}
	}
	return live
}
