package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrelay/agentrelay/client"
)

// TestBuiltinCommandsDieWithRelay: with the builtin guest, a SIGKILL of the
// relay takes its commands with it, as a VM's end would, including a
// grandchild in the background, in pipe and tty mode.
func TestBuiltinCommandsDieWithRelay(t *testing.T) {
	p, _ := builtinRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var pids []int
	for _, tty := range []bool{false, true} {
		c, err := client.Dial(ctx, p.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		r, w := io.Pipe()
		go c.Exec(context.Background(), client.ExecOptions{
			Cmd: "sh", Args: []string{"-c", "echo $$; sleep 1000 & echo $!; wait"}, TTY: tty, Stdout: w,
		})
		sc := bufio.NewScanner(r)
		for i := 0; i < 2 && sc.Scan(); i++ {
			pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
			if err != nil {
				t.Fatalf("tty %v: not a pid: %q", tty, sc.Text())
			}
			pids = append(pids, pid)
		}
		go io.Copy(io.Discard, r)
	}
	if len(pids) != 4 {
		t.Fatalf("pids %v", pids)
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d not running before the kill", pid)
		}
	}
	p.cmd.Process.Kill()
	<-p.done
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d (of %v: shell, sleep; tty shell, sleep) outlived the relay's SIGKILL", pid, pids)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	if unix.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}
