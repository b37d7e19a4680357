package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/agentrelay/agentrelay/client"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/host"
	"github.com/agentrelay/agentrelay/internal/syncbuf"
)

// echoConsole listens on path as a VMM's console socket does and plays an
// echo guest on each connection: core.ready, then every byte back.
func echoConsole(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ready, err := frame.AppendMessage(nil, 0, frame.TypeReady, frame.Ready{BootTimeNs: 1})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write(ready)
				io.Copy(c, c)
			}()
		}
	}()
}

// startHostDaemon runs relay host with its control socket and state in dir.
func startHostDaemon(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{socket: filepath.Join(dir, "host.sock"), dir: dir, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"host", "--control", p.socket, "--loops", "2"}, args...)...)
	p.cmd.Stderr, p.cmd.Stdout = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("relay host output:\n%s", p.stderr.String())
		}
	})
	p.waitSocket(t)
	return p
}

// echoThrough has one frame echoed through a sandbox's client socket.
func echoThrough(t *testing.T, socket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.DialRaw(ctx, socket)
	if err != nil {
		t.Fatalf("dial %s: %v", socket, err)
	}
	defer c.Close()
	id := c.NextID()
	if err := c.Send(id, frame.TypeExecStdout, frame.ExecStdout{Data: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		f, err := c.ReadFrame(nil)
		if err == nil && f.ID != id {
			err = errors.New("echoed under another id")
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("echo through %s: %v", socket, err)
		}
	case <-ctx.Done():
		t.Fatalf("no echo through %s", socket)
	}
}

func listSandboxes(t *testing.T, control string) []host.Info {
	t.Helper()
	out, errOut, code := runBin(t, "sandbox", "ls", "--json", "--control", control)
	var list []host.Info
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("sandbox ls --json: exit %d %q %q", code, out, errOut)
	}
	return list
}

func waitServing(t *testing.T, control, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, in := range listSandboxes(t, control) {
			if in.Name == name && in.State == host.StateServing {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s never served: %+v", name, listSandboxes(t, control))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHostDaemon: relay host and relay sandbox end to end: add, a round
// trip through the sandbox, ls, stats and /metrics, a refused duplicate;
// SIGTERM removes the sockets and keeps the state, and the next daemon
// restores the sandbox; after kill -9 the stale sockets are replaced; rm
// removes the socket and the entry.
func TestHostDaemon(t *testing.T) {
	dir := privateDir(t)
	echoConsole(t, filepath.Join(dir, "vm1.console"))
	control := filepath.Join(dir, "host.sock")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	debugAddr := ln.Addr().String()
	ln.Close()
	p := startHostDaemon(t, dir, "--debug-addr", debugAddr)
	if fi, err := os.Stat(control); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v %v", fi, err)
	}

	// Relative paths are the caller's, made absolute by the CLI.
	add := exec.Command(bin, "sandbox", "add", "vm1", "--guest", "unix:vm1.console", "--socket", "vm1.sock", "--control", control, "--exec-log", "logs")
	add.Dir = dir
	if out, err := add.CombinedOutput(); err != nil || !strings.Contains(string(out), "sandbox vm1 ") {
		t.Fatalf("sandbox add: %v %s", err, out)
	}
	sock := filepath.Join(dir, "vm1.sock")
	echoThrough(t, sock)
	waitServing(t, control, "vm1")
	// A loop publishes its frame counters at the end of its pass, which
	// may come after the echo reached the client.
	var list []host.Info
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if list = listSandboxes(t, control); len(list) == 1 && list[0].Counters["frames_to_client"] == 1 {
			break
		}
	}
	if len(list) != 1 || list[0].Socket != sock || list[0].ExecLog != filepath.Join(dir, "logs") || list[0].Counters["frames_to_client"] != 1 {
		t.Fatalf("sandbox ls: %+v", list)
	}
	out, _, code := runBin(t, "sandbox", "ls", "--control", control)
	if code != 0 || !strings.Contains(out, "NAME") || !strings.Contains(out, "vm1") || !strings.Contains(out, "serving") {
		t.Fatalf("sandbox ls: exit %d\n%s", code, out)
	}
	out, _, code = runBin(t, "stats", "--debug-addr", debugAddr)
	if code != 0 || !strings.Contains(out, "SANDBOX") || !strings.Contains(out, "vm1") || !regexp.MustCompile(`sandboxes serving +1\n`).MatchString(out) {
		t.Fatalf("stats of a host: exit %d\n%s", code, out)
	}
	resp, err := http.Get("http://" + debugAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`relay_to_client_frames_total{sandbox="vm1"} 1`, `relay_host_sandboxes{state="serving"} 1`,
		`relay_host_loop_sandboxes{loop="1"}`, `relay_host_sandbox_state{sandbox="vm1",state="serving"} 1`, `relay_exec_log_lines_total{sandbox="vm1"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	problems, err := promlint.New(strings.NewReader(string(metrics))).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
	}
	_, errOut, code := runBin(t, "sandbox", "add", "vm1", "--guest", "unix:"+filepath.Join(dir, "vm1.console"), "--socket", filepath.Join(dir, "other.sock"), "--control", control)
	if code != 1 || !strings.Contains(errOut, "sandbox vm1 exists") {
		t.Fatalf("duplicate add: exit %d %q", code, errOut)
	}
	_, errOut, code = runBin(t, "sandbox", "add", "vm2", "--socket", "x.sock", "--control", control)
	if code != 2 || !strings.Contains(errOut, "--guest") {
		t.Fatalf("add without --guest: exit %d %q", code, errOut)
	}

	// SIGTERM: sockets gone, state kept; the next daemon restores.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("relay host exited %d after SIGTERM", code)
	}
	for _, s := range []string{sock, control} {
		if _, err := os.Stat(s); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s after SIGTERM: %v", s, err)
		}
	}
	p = startHostDaemon(t, dir)
	waitServing(t, control, "vm1")
	echoThrough(t, sock)

	// kill -9 leaves both sockets behind, stale; the next daemon replaces them.
	p.cmd.Process.Kill()
	p.wait(t, 5*time.Second)
	for _, s := range []string{sock, control} {
		if _, err := os.Stat(s); err != nil {
			t.Fatalf("%s after kill -9: %v", s, err)
		}
	}
	startHostDaemon(t, dir, "--debug-addr", debugAddr)
	waitServing(t, control, "vm1")
	echoThrough(t, sock)

	// A builtin guest behind relay guest: a command runs through the host.
	g := exec.Command(bin, "guest", "--listen", filepath.Join(dir, "vm2.console"), "builtin")
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { g.Process.Signal(syscall.SIGTERM); g.Wait() }()
	if _, errOut, code := runBin(t, "sandbox", "add", "vm2", "--guest", "unix:"+filepath.Join(dir, "vm2.console"), "--socket", filepath.Join(dir, "vm2.sock"), "--control", control); code != 0 {
		t.Fatalf("sandbox add vm2: exit %d %q", code, errOut)
	}
	if out, errOut, code := relayExec(t, filepath.Join(dir, "vm2.sock"), "", "--", "sh", "-c", "echo hello from vm2; exit 3"); code != 3 || out != "hello from vm2\n" {
		t.Fatalf("exec through the host: exit %d %q %q", code, out, errOut)
	}
	if _, errOut, code := runBin(t, "sandbox", "rm", "vm2", "--control", control); code != 0 {
		t.Fatalf("sandbox rm vm2: exit %d %q", code, errOut)
	}

	if _, errOut, code := runBin(t, "sandbox", "rm", "vm1", "--control", control); code != 0 {
		t.Fatalf("sandbox rm: exit %d %q", code, errOut)
	}
	// A removed sandbox's series are gone from the next scrape.
	if _, m := httpGet(t, "http://"+debugAddr+"/metrics"); strings.Contains(m, `sandbox="vm1"`) {
		t.Errorf("/metrics still has vm1's series after rm")
	}
	if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket after rm: %v", err)
	}
	if list := listSandboxes(t, control); len(list) != 0 {
		t.Fatalf("ls after rm: %+v", list)
	}
	if _, errOut, code := runBin(t, "sandbox", "rm", "vm1", "--control", control); code != 1 || !strings.Contains(errOut, "no sandbox vm1") {
		t.Fatalf("second rm: exit %d %q", code, errOut)
	}
	// A second daemon on a live control socket is refused.
	_, errOut, code = runBin(t, "host", "--control", control)
	if code != 1 || !strings.Contains(errOut, "in use") {
		t.Fatalf("second daemon: exit %d %q", code, errOut)
	}
}
