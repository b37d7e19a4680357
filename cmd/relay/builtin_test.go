package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/agent"
)

// The builtin guest runs commands as host processes with the relay's
// privileges. These tests pin down that the binary never picks it by itself,
// serves it only on a private socket, and says it offers no isolation.

// TestServeRequiresGuest: without --guest the relay does not start (exit 2,
// a message naming the flag, no socket) instead of defaulting to a guest.
func TestServeRequiresGuest(t *testing.T) {
	dir := privateDir(t)
	sock := filepath.Join(dir, "agent.sock")
	for _, args := range [][]string{
		{"serve", "--socket", sock},
		{"--socket", sock}, // serve is the default command
	} {
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != 2 {
			t.Fatalf("%q: exit code %d (%v), want 2\n%s", args, code, err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "--guest") || !strings.Contains(stderr.String(), "required") {
			t.Fatalf("%q: message does not say --guest is required:\n%s", args, stderr.String())
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Fatalf("%q: socket created: %v", args, err)
		}
	}
	var usage bytes.Buffer
	help := exec.Command(bin, "help")
	help.Stdout = &usage
	help.Run()
	if !strings.Contains(usage.String(), "builtin (runs commands as host processes: no isolation)") {
		t.Fatalf("usage does not warn about builtin:\n%s", usage.String())
	}
}

// TestBuiltinWarnsNoIsolation: --guest builtin logs, at warning level, that
// commands run as host processes and that it offers no isolation.
func TestBuiltinWarnsNoIsolation(t *testing.T) {
	p := startRelay(t, "--guest", "builtin")
	p.waitSocket(t)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.stderr.String(), agent.Warning) {
		if time.Now().After(deadline) {
			t.Fatalf("no isolation warning logged:\n%s", p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, agent.Warning) && !strings.Contains(l, "level=WARN") {
			t.Fatalf("warning logged below warning level: %s", l)
		}
	}
	if !strings.Contains(agent.Warning, "no isolation") || !strings.Contains(agent.Warning, "host processes") {
		t.Fatalf("agent.Warning does not say what it must: %q", agent.Warning)
	}
}

// TestBuiltinRefusesSharedSocketDirectory: with the socket in a directory
// others may write to, the relay refuses to start (exit 1, a message saying
// why) before the builtin guest exists: no command can ever run.
func TestBuiltinRefusesSharedSocketDirectory(t *testing.T) {
	dir := privateDir(t)
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil { // whatever the umask
		t.Fatal(err)
	}
	sock := filepath.Join(shared, "agent.sock")
	cmd := exec.Command(bin, "serve", "--socket", sock, "--guest", "builtin")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("relay started on a shared directory:\n%s", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit code %d, want 1\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "writable by group or others") {
		t.Fatalf("message does not say why:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), agent.Warning) {
		t.Fatalf("the builtin guest was started:\n%s", stderr.String())
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket created: %v", err)
	}
}
