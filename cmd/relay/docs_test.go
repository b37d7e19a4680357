package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/agentrelay/agentrelay/internal/syncbuf"
)

// repoFile reads a file from the repository's root.
func repoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestLicense: the full Apache License 2.0 text, not a pointer to it.
func TestLicense(t *testing.T) {
	l := repoFile(t, "LICENSE")
	for _, want := range []string{
		"Apache License\n                           Version 2.0, January 2004",
		"1. Definitions.",
		"9. Accepting Warranty or Additional Liability.",
		"END OF TERMS AND CONDITIONS",
	} {
		if !strings.Contains(l, want) {
			t.Errorf("LICENSE lacks %q", want)
		}
	}
	if n := strings.Count(l, "\n"); n < 190 {
		t.Errorf("LICENSE has %d lines: not the full text", n)
	}
}

// TestREADME: it links nothing outside the repository, documents the exit
// codes, RELAY_SOCKET and the systemd unit, and its `make run` flow uses
// the debug address the Makefile serves.
func TestREADME(t *testing.T) {
	readme := repoFile(t, "README.md")
	// Markdown links and code spans naming a path that leaves the repo.
	outside := regexp.MustCompile("(\\]\\(|`)(\\.\\./|/work/)[^)`]*")
	if m := outside.FindAllString(readme, -1); m != nil {
		t.Errorf("README points outside the repository: %q", m)
	}
	for _, link := range regexp.MustCompile(`\]\(([^)#:]+)\)`).FindAllStringSubmatch(readme, -1) {
		if _, err := os.Stat(filepath.Join("..", "..", link[1])); err != nil {
			t.Errorf("README links %s: %v", link[1], err)
		}
	}
	for _, want := range []string{"RELAY_SOCKET", "contrib/systemd/agentrelay.service", "| 124 |", "| 125 |", "| 126 |", "| 127 |",
		"| 128+N |", "| 2 |", "C compiler", "minutes", "relay completion bash"} {
		if !strings.Contains(readme, want) {
			t.Errorf("README lacks %q", want)
		}
	}

	run, err := exec.Command("make", "-s", "-n", "-C", "../..", "run").Output()
	if err != nil {
		t.Skip("make:", err)
	}
	var serve string
	for sc := bufio.NewScanner(bytes.NewReader(run)); sc.Scan(); {
		if strings.Contains(sc.Text(), "relay serve") {
			serve = sc.Text()
		}
	}
	m := regexp.MustCompile(`--debug-addr (\S+)`).FindStringSubmatch(serve)
	if m == nil || !strings.Contains(serve, "--socket /tmp/agentrelay/agent.sock") {
		t.Fatalf("make run does not serve /tmp/agentrelay/agent.sock with --debug-addr: %q", serve)
	}
	if !strings.Contains(readme, "relay stats --debug-addr "+m[1]) {
		t.Errorf("README's flow does not run relay stats against make run's %s", m[1])
	}
}

// TestSystemdUnit: the unit puts the socket where relay exec looks by
// default, in a RuntimeDirectory of its own, with hardening; its command
// line is one the binary accepts; systemd-analyze finds nothing wrong.
func TestSystemdUnit(t *testing.T) {
	unit := repoFile(t, "contrib/systemd/agentrelay.service")
	keys := map[string]string{}
	for _, l := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			keys[k] = v
		}
	}
	for k, want := range map[string]string{
		"RuntimeDirectory": "agentrelay", "RuntimeDirectoryMode": "0700",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"CapabilityBoundingSet": "",
	} {
		if v, ok := keys[k]; !ok || v != want {
			t.Errorf("%s=%q, want %q", k, v, want)
		}
	}
	start := strings.Fields(keys["ExecStart"])
	if len(start) < 2 || start[1] != "serve" {
		t.Fatalf("ExecStart=%q", keys["ExecStart"])
	}
	socket := flagValue(start, "--socket")
	if socket != "/run/agentrelay/agent.sock" {
		t.Errorf("the unit's socket %q is not /run/agentrelay/agent.sock", socket)
	}
	// relay exec with no --socket, RELAY_SOCKET or XDG_RUNTIME_DIR looks
	// there too.
	if _, stderr, _ := runExecBin(t, nil, "", "--", "true"); !strings.Contains(stderr, " "+socket+":") && !strings.Contains(stderr, "handshake") {
		t.Errorf("relay exec's default socket is not the unit's: %q", stderr)
	}

	// The same command line, with the paths moved into a private directory
	// and the builtin guest, starts a relay.
	dir := privateDir(t)
	args := make([]string, 0, len(start))
	for _, a := range start[1:] {
		switch {
		case a == socket:
			a = filepath.Join(dir, "agent.sock")
		case strings.HasPrefix(a, "/var/log/"):
			a = dir
		case a == "${AGENTRELAY_GUEST}":
			a = "builtin"
		}
		args = append(args, a)
	}
	p := &proc{socket: filepath.Join(dir, "agent.sock"), stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	p.waitSocket(t)

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze")
	}
	// verify wants the ExecStart binary to exist: point it at ours.
	copyPath := filepath.Join(t.TempDir(), "agentrelay.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(unit, start[0], bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", copyPath).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// TestSystemdHostUnit: the host daemon's unit puts the control socket where
// relay sandbox looks by default and the state file in a StateDirectory
// that outlives restarts; its command line starts a daemon; systemd-analyze
// finds nothing wrong.
func TestSystemdHostUnit(t *testing.T) {
	unit := repoFile(t, "contrib/systemd/agentrelay-host.service")
	keys := map[string]string{}
	for _, l := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			keys[k] = v
		}
	}
	for k, want := range map[string]string{
		"RuntimeDirectory": "agentrelay", "RuntimeDirectoryMode": "0700", "RuntimeDirectoryPreserve": "restart",
		"StateDirectory": "agentrelay", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "CapabilityBoundingSet": "",
	} {
		if v, ok := keys[k]; !ok || v != want {
			t.Errorf("%s=%q, want %q", k, v, want)
		}
	}
	start := strings.Fields(keys["ExecStart"])
	if len(start) < 2 || start[1] != "host" {
		t.Fatalf("ExecStart=%q", keys["ExecStart"])
	}
	control, state := flagValue(start, "--control"), flagValue(start, "--state")
	if control != "/run/agentrelay/host.sock" || !strings.HasPrefix(state, "/var/lib/agentrelay/") {
		t.Errorf("control %q, state %q", control, state)
	}
	// relay sandbox with no --control, RELAY_HOST_CONTROL or
	// XDG_RUNTIME_DIR asks there.
	if _, errOut, _ := runBin(t, "sandbox", "ls"); !strings.Contains(errOut, control) {
		t.Errorf("relay sandbox's default control socket is not the unit's: %q", errOut)
	}
	dir := privateDir(t)
	args := make([]string, 0, len(start))
	for _, a := range start[1:] {
		switch a {
		case control:
			a = filepath.Join(dir, "host.sock")
		case state:
			a = filepath.Join(dir, "state.json")
		}
		args = append(args, a)
	}
	p := &proc{socket: filepath.Join(dir, "host.sock"), stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.done })
	p.waitSocket(t)

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze")
	}
	copyPath := filepath.Join(t.TempDir(), "agentrelay-host.service")
	if err := os.WriteFile(copyPath, []byte(strings.ReplaceAll(unit, start[0], bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", copyPath).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
