package main

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/internal/syncbuf"
)

// execProc is a running `relay exec`.
type execProc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncbuf.Buffer
	done           chan struct{}
}

// startExec starts `relay exec ARGS` with env added to the test's own
// environment (RELAY_SOCKET and XDG_RUNTIME_DIR removed) and stdin.
func startExec(t *testing.T, env []string, stdin io.Reader, args ...string) *execProc {
	t.Helper()
	e := &execProc{stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	e.cmd = exec.Command(bin, append([]string{"exec"}, args...)...)
	e.cmd.Env = append(cleanEnv(), env...)
	e.cmd.Stdin, e.cmd.Stdout, e.cmd.Stderr = stdin, e.stdout, e.stderr
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.cmd.Wait(); close(e.done) }()
	t.Cleanup(func() {
		e.cmd.Process.Kill()
		<-e.done
	})
	return e
}

// cleanEnv is the test's environment without the variables that choose
// the default socket.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RELAY_SOCKET=") && !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") {
			env = append(env, kv)
		}
	}
	return env
}

func (e *execProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-e.done:
	case <-time.After(timeout):
		t.Fatalf("relay exec still running after %v\nstdout: %q\nstderr: %q", timeout, e.stdout.String(), e.stderr.String())
	}
	return e.cmd.ProcessState.ExitCode()
}

// waitFor waits until buf holds s.
func waitFor(t *testing.T, what string, buf interface{ String() string }, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(buf.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %q: %q", what, s, buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runExecBin is relayExec with an environment: the command's stdout, stderr and
// exit code.
func runExecBin(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	e := startExec(t, env, strings.NewReader(stdin), args...)
	code := e.wait(t, 30*time.Second)
	return e.stdout.String(), e.stderr.String(), code
}

// TestExecExitCodes: the command's own status and 128+N pass through;
// relay exec's own failures follow docker's and bash's convention.
func TestExecExitCodes(t *testing.T) {
	p, _ := builtinRelay(t)
	dir := privateDir(t)
	notExec := filepath.Join(dir, "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := "--socket=" + p.socket
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string // a substring, or "" for an empty stderr
	}{
		{"own status", []string{sock, "--", "sh", "-c", "exit 3"}, 3, ""},
		{"killed by SIGTERM", []string{sock, "--", "sh", "-c", "kill -TERM $$"}, 143, ""},
		{"killed by SIGKILL", []string{sock, "--", "sh", "-c", "kill -KILL $$"}, 137, ""},
		{"not found", []string{sock, "--", "/no/such/command"}, 127, `relay exec: cannot run "/no/such/command": not_found: `},
		{"not executable", []string{sock, "--", notExec}, 126, "permission_denied"},
		{"bad working directory", []string{sock, "-w", "/no/such/dir", "--", "true"}, 126, "bad_cwd"},
		{"no relay", []string{"--socket", filepath.Join(dir, "none.sock"), "--", "true"}, 125, "relay exec: cannot connect to the relay at " + filepath.Join(dir, "none.sock") + ": no such file or directory"},
		{"unknown flag", []string{sock, "--bogus", "--", "true"}, 2, "relay exec: flag provided but not defined: --bogus\nRun 'relay exec --help' for usage.\n"},
		{"unknown short flag", []string{sock, "-x", "--", "true"}, 2, "relay exec: flag provided but not defined: -x\n"},
		{"no command", []string{sock}, 2, "relay exec: no command given"},
		{"bad rlimit", []string{sock, "--rlimit", "nofiles=1", "--", "true"}, 2, `unknown resource "nofiles"`},
		{"bad timeout", []string{sock, "--timeout", "soon", "--", "true"}, 2, `relay exec: invalid value "soon" for flag --timeout: want a duration`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runExecBin(t, nil, "", tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr %q", code, tc.code, stderr)
			}
			if tc.stderr == "" && stderr != "" || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q, want it to contain %q", stderr, tc.stderr)
			}
			if strings.Contains(stderr, "client:") {
				t.Errorf("stderr has the SDK's prefix: %q", stderr)
			}
		})
	}
}

// TestExecRejectsInvalidUTF8: arguments, environment and working directory
// that are not valid UTF-8 are refused before anything runs, with exit 2.
func TestExecRejectsInvalidUTF8(t *testing.T) {
	p, _ := builtinRelay(t)
	marker := filepath.Join(privateDir(t), "ran")
	touch := "touch " + marker
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--", "sh", "-c", touch, "\xff"}, `relay exec: argument 3 is not valid UTF-8: "\xff"`},
		{[]string{"--", "sh", "-c", touch + " \xfe"}, `relay exec: argument 2 is not valid UTF-8: "touch `},
		{[]string{"--", "\xc3sh", "-c", touch}, `relay exec: the command name is not valid UTF-8`},
		{[]string{"-e", "A=\x80", "--", "sh", "-c", touch}, `relay exec: --env value is not valid UTF-8: "A=\x80"`},
		{[]string{"-e", "BAD_LOCAL", "--", "sh", "-c", touch}, `relay exec: --env BAD_LOCAL: the local value is not valid UTF-8`},
		{[]string{"-w", "/tmp/\xff", "--", "sh", "-c", touch}, `relay exec: --workdir is not valid UTF-8`},
	} {
		_, stderr, code := runExecBin(t, []string{"BAD_LOCAL=\xff"}, "", append([]string{"--socket", p.socket}, tc.args...)...)
		if code != 2 || !strings.HasPrefix(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("a command ran: %v", err)
	}
	// The same command with valid text does run: the marker proves it.
	if _, stderr, code := runExecBin(t, nil, "", "--socket", p.socket, "--", "sh", "-c", touch); code != 0 {
		t.Fatalf("valid command: exit %d %q", code, stderr)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal(err)
	}
}

// TestExecForwardsSignals: SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to
// relay exec reach the command, whose traps run; relay exec exits with the
// command's own status.
func TestExecForwardsSignals(t *testing.T) {
	p, _ := builtinRelay(t)
	for i, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT} {
		name := strings.TrimPrefix(sigName(sig), "SIG")
		script := "trap 'echo got " + name + "; exit " + strconv.Itoa(70+i) + "' " + name + "; echo ready; while :; do sleep 0.05; done"
		e := startExec(t, nil, nil, "--socket", p.socket, "--", "sh", "-c", script)
		waitFor(t, "stdout", e.stdout, "ready\n")
		e.cmd.Process.Signal(sig)
		// The shell may report its sleep killed ("Terminated"); relay
		// exec itself says nothing.
		if code := e.wait(t, 10*time.Second); code != 70+i || e.stdout.String() != "ready\ngot "+name+"\n" || strings.Contains(e.stderr.String(), "relay") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d and the trap's output", sig, code, e.stdout.String(), e.stderr.String(), 70+i)
		}
	}
}

func sigName(s syscall.Signal) string {
	return map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM", syscall.SIGHUP: "SIGHUP", syscall.SIGQUIT: "SIGQUIT"}[s]
}

// TestExecSecondInterruptKills: a command that ignores SIGINT is killed by
// a second Ctrl-C within a second, and relay exec says so.
func TestExecSecondInterruptKills(t *testing.T) {
	p, _ := builtinRelay(t)
	e := startExec(t, nil, nil, "--socket", p.socket, "--", "sh", "-c", "trap 'echo ignored' INT; echo ready; while :; do sleep 0.05; done")
	waitFor(t, "stdout", e.stdout, "ready\n")
	e.cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(50 * time.Millisecond) // two deliveries, not one merged
	e.cmd.Process.Signal(syscall.SIGINT)
	if code := e.wait(t, 10*time.Second); code != 137 {
		t.Fatalf("exit %d, want 137; stderr %q", code, e.stderr.String())
	}
	if want := "relay exec: second interrupt within 1s: sending SIGKILL\n"; e.stderr.String() != want {
		t.Fatalf("stderr %q, want %q", e.stderr.String(), want)
	}

	// Two interrupts further apart are two SIGINTs.
	e = startExec(t, nil, nil, "--socket", p.socket, "--", "sh", "-c", "n=0; trap 'n=$((n+1)); echo ignored $n; [ $n = 2 ] && exit 9' INT; echo ready; while :; do sleep 0.05; done")
	waitFor(t, "stdout", e.stdout, "ready\n")
	e.cmd.Process.Signal(syscall.SIGINT)
	waitFor(t, "stdout", e.stdout, "ignored 1\n")
	time.Sleep(1100 * time.Millisecond)
	e.cmd.Process.Signal(syscall.SIGINT)
	if code := e.wait(t, 10*time.Second); code != 9 || e.stderr.String() != "" {
		t.Fatalf("exit %d, stderr %q; want 9 and nothing", code, e.stderr.String())
	}
}

// TestExecTimeout: at --timeout the command gets SIGTERM, SIGKILL after
// --kill-after if it is still there, and relay exec exits 124.
func TestExecTimeout(t *testing.T) {
	p, _ := builtinRelay(t)
	start := time.Now()
	if _, stderr, code := runExecBin(t, nil, "", "--socket", p.socket, "--timeout", "300ms", "--", "sleep", "30"); code != 124 || stderr != "" {
		t.Fatalf("sleep: exit %d %q, want 124", code, stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the timeout took %v", d)
	}

	start = time.Now()
	stdout, _, code := runExecBin(t, nil, "", "--socket", p.socket, "--timeout", "0.3", "--kill-after", "700ms", "--",
		"sh", "-c", "trap 'echo term' TERM; while :; do sleep 0.05; done")
	if d := time.Since(start); code != 124 || stdout != "term\n" || d < time.Second {
		t.Fatalf("TERM trapped: exit %d, stdout %q after %v; want 124, the trap's output, SIGKILL after 1 s", code, stdout, d)
	}

	// A command that ends in time keeps its status.
	if _, _, code := runExecBin(t, nil, "", "--socket", p.socket, "--timeout", "20s", "--", "sh", "-c", "exit 4"); code != 4 {
		t.Fatalf("in time: exit %d, want 4", code)
	}
}

// TestExecFlags: the long flags and the habits of docker exec and ssh.
func TestExecFlags(t *testing.T) {
	p, _ := builtinRelay(t)
	sock := []string{"--socket", p.socket}
	for _, tc := range []struct {
		name  string
		env   []string
		stdin string
		args  []string
		want  string
	}{
		{"-it", nil, "", []string{"-it", "--", "sh", "-c", "tty"}, "/dev/pts/"},
		{"--tty --interactive", nil, "", []string{"--tty", "--interactive", "--", "sh", "-c", "tty"}, "/dev/pts/"},
		{"-i forwards stdin", nil, "piped\n", []string{"-i", "--", "cat"}, "piped\n"},
		{"--env --workdir", nil, "", []string{"--env", "A=1", "--env=B=2", "--workdir", "/tmp", "--", "sh", "-c", "echo $A$B; pwd"}, "12\n/tmp\n"},
		{"-e NAME passes the local value", []string{"FROM_HERE=local value"}, "", []string{"-e", "FROM_HERE", "--", "sh", "-c", "echo \"$FROM_HERE\""}, "local value\n"},
		{"-e NAME unset passes nothing", nil, "", []string{"-e", "NOT_SET_HERE", "--", "sh", "-c", "echo ${NOT_SET_HERE-unset}"}, "unset\n"},
		{"--rlimit", nil, "", []string{"--rlimit", "nofile=100:200", "--rlimit", "RLIMIT_CORE=0", "--", "sh", "-c", "ulimit -Sn; ulimit -Hn; ulimit -c"}, "100\n200\n0\n"},
		{"TERM follows under -t", []string{"TERM=vt100"}, "", []string{"-t", "--", "sh", "-c", "echo $TERM"}, "vt100"},
		{"--env TERM wins under -t", []string{"TERM=vt100"}, "", []string{"-t", "-e", "TERM=dumb", "--", "sh", "-c", "echo $TERM"}, "dumb"},
		{"command without --", nil, "", []string{"sh", "-c", "echo $0", "zero"}, "zero\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runExecBin(t, tc.env, tc.stdin, append(sock, tc.args...)...)
			if code != 0 || !strings.Contains(stdout, tc.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and %q", code, stdout, stderr, tc.want)
			}
		})
	}
	t.Run("--user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("switching users needs root")
		}
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skip(err)
		}
		for _, flag := range []string{"-u", "--user"} {
			stdout, stderr, code := runExecBin(t, nil, "", append(sock, flag, "nobody", "--", "id", "-u")...)
			if code != 0 || stdout != nobody.Uid+"\n" {
				t.Fatalf("%s nobody: exit %d, stdout %q, stderr %q; want uid %s", flag, code, stdout, stderr, nobody.Uid)
			}
		}
	})
	t.Run("-n in a while-read loop", func(t *testing.T) {
		// Without -n the first relay exec would swallow the loop's input.
		script := `printf 'a\nb\nc\n' | while read -r x; do "$RELAY" exec -n --socket "$SOCK" -- echo "got $x"; done`
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = append(cleanEnv(), "RELAY="+bin, "SOCK="+p.socket)
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "got a\ngot b\ngot c\n" {
			t.Fatalf("%v: %q", err, out)
		}
	})
}

// TestExecRelayRefuses: a relay that closes the connection before the
// handshake (all slots and the wait queue taken; the guest never ready)
// gives exit 125 and a message that says what that means.
func TestExecRelayRefuses(t *testing.T) {
	const want = "relay exec: the relay closed the connection before the handshake: all 16 client slots busy, the guest not ready or this user not allowed (see the relay's log)\n"
	t.Run("slots busy", func(t *testing.T) {
		p, _ := builtinRelay(t)
		// 16 clients in the slots, then relay.Options.AcceptQueue's 64
		// waiting: the next connection is closed at once.
		for i := range 16 + 64 {
			c, err := net.Dial("unix", p.socket)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if i < 16 {
				var off [4]byte
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(c, off[:]); err != nil {
					t.Fatalf("client %d: %v", i, err)
				}
			}
		}
		waitFor(t, "relay log", p.stderr, `position=64`)
		_, stderr, code := runExecBin(t, nil, "", "--socket", p.socket, "--", "true")
		if code != 125 || stderr != want {
			t.Fatalf("exit %d, stderr %q; want 125, %q", code, stderr, want)
		}
	})
	t.Run("interrupted or timed out while waiting for a slot", func(t *testing.T) {
		p, _ := builtinRelay(t)
		for i := range 16 {
			c, err := net.Dial("unix", p.socket)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			var off [4]byte
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, off[:]); err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
		}
		// Nothing runs yet: SIGINT ends relay exec at once (130), as
		// --timeout does (124).
		e := startExec(t, nil, nil, "--socket", p.socket, "--", "true")
		waitFor(t, "relay log", p.stderr, "connection waits for one\" position=1")
		start := time.Now()
		e.cmd.Process.Signal(syscall.SIGINT)
		if code := e.wait(t, 10*time.Second); code != 130 || time.Since(start) > 2*time.Second || e.stderr.String() != "" {
			t.Fatalf("SIGINT: exit %d after %v, stderr %q; want 130 at once", code, time.Since(start), e.stderr.String())
		}
		start = time.Now()
		if _, stderr, code := runExecBin(t, nil, "", "--socket", p.socket, "--timeout", "300ms", "--", "true"); code != 124 || time.Since(start) > 3*time.Second {
			t.Fatalf("--timeout: exit %d after %v, stderr %q; want 124 before the relay's 5 s wait", code, time.Since(start), stderr)
		}
	})
	t.Run("guest not ready", func(t *testing.T) {
		g, path := newFakeGuest(t, 0)
		p := startRelay(t, "--guest", "unix:"+path, "--ready-timeout", "1500ms")
		gc := <-g.conn // connected, never says ready
		// Held until the end: a collected net.Conn closes its fd, and a
		// guest that hangs up is not one that is not ready.
		t.Cleanup(func() { gc.Close() })
		p.waitSocket(t)
		_, stderr, code := runExecBin(t, nil, "", "--socket", p.socket, "--", "true")
		if code != 125 || stderr != want {
			t.Fatalf("exit %d, stderr %q; want 125, %q", code, stderr, want)
		}
	})
}

// TestExecRelayDies: the relay going away under a running command is a
// transport failure (125) with one plain message.
func TestExecRelayDies(t *testing.T) {
	p, _ := builtinRelay(t)
	e := startExec(t, nil, nil, "--socket", p.socket, "--", "sh", "-c", "echo $$; exec sleep 30")
	waitFor(t, "stdout", e.stdout, "\n")
	if pid, err := strconv.Atoi(strings.TrimSpace(e.stdout.String())); err == nil {
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	}
	p.cmd.Process.Kill()
	code := e.wait(t, 10*time.Second)
	if want := "relay exec: the relay closed the connection before \"sh\" ended (see the relay's log)\n"; code != 125 || e.stderr.String() != want {
		t.Fatalf("exit %d, stderr %q; want 125, %q", code, e.stderr.String(), want)
	}
}

// TestDefaultSocket: serve and exec agree on the socket without --socket:
// $RELAY_SOCKET, else $XDG_RUNTIME_DIR/agentrelay/agent.sock, else
// /run/agentrelay/agent.sock.
func TestDefaultSocket(t *testing.T) {
	xdg := privateDir(t)
	srv := exec.Command(bin, "serve", "--guest", "builtin")
	srv.Env = append(cleanEnv(), "XDG_RUNTIME_DIR="+xdg)
	var log syncbuf.Buffer
	srv.Stderr = &log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	sock := filepath.Join(xdg, "agentrelay", "agent.sock")
	p := &proc{socket: sock, stderr: &log, done: make(chan struct{})}
	p.waitSocket(t)

	if out, stderr, code := runExecBin(t, []string{"XDG_RUNTIME_DIR=" + xdg}, "", "--", "echo", "via XDG_RUNTIME_DIR"); code != 0 || out != "via XDG_RUNTIME_DIR\n" {
		t.Fatalf("exec with XDG_RUNTIME_DIR: exit %d %q %q", code, out, stderr)
	}
	// RELAY_SOCKET comes first.
	if out, stderr, code := runExecBin(t, []string{"XDG_RUNTIME_DIR=/nonexistent", "RELAY_SOCKET=" + sock}, "", "--", "echo", "via RELAY_SOCKET"); code != 0 || out != "via RELAY_SOCKET\n" {
		t.Fatalf("exec with RELAY_SOCKET: exit %d %q %q", code, out, stderr)
	}
	// --socket comes before both.
	if _, stderr, code := runExecBin(t, []string{"RELAY_SOCKET=" + sock}, "", "--socket", filepath.Join(xdg, "other.sock"), "--", "true"); code != 125 || !strings.Contains(stderr, "other.sock") {
		t.Fatalf("--socket did not win: exit %d %q", code, stderr)
	}
	if _, err := os.Stat("/run/agentrelay/agent.sock"); err == nil {
		t.Skip("a relay serves /run/agentrelay/agent.sock here")
	}
	_, stderr, code := runExecBin(t, nil, "", "--", "true")
	if want := "relay exec: cannot connect to the relay at /run/agentrelay/agent.sock: "; code != 125 || !strings.HasPrefix(stderr, want) {
		t.Fatalf("no variables: exit %d %q, want 125 and %q", code, stderr, want)
	}
}

// TestExecHoldsUntilStarted plays the guest to see the frames relay exec
// sends: the request carries the terminal's size; a resize and a signal
// that arrive before core.exec.started are held, then sent after it.
func TestExecHoldsUntilStarted(t *testing.T) {
	g, path := newFakeGuest(t, 0)
	p := startRelay(t, "--guest", "unix:"+path, "--ready-timeout", "10")
	gc := <-g.conn
	defer gc.Close()
	gc.Write(enc(t, 0, frame.TypeReady, frame.Ready{}))
	p.waitSocket(t)

	tty := startPTY(t, 33, 101, "exec", "--socket", p.socket, "-t", "--", "sh")
	req := readMessage(t, gc)
	var r frame.ExecRequest
	if err := req.Into(&r); err != nil || req.Type != frame.TypeExecRequest {
		t.Fatalf("first frame %s: %v", req.TypeName, err)
	}
	if r.Rows != 33 || r.Cols != 101 || !r.TTY {
		t.Fatalf("request: %dx%d tty %v, want 33x101 tty", r.Rows, r.Cols, r.TTY)
	}
	// Before started: a window change and a SIGTERM.
	tty.setsize(t, 50, 132)
	time.Sleep(200 * time.Millisecond) // SIGWINCH handled
	tty.cmd.Process.Signal(syscall.SIGTERM)
	gc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if b, err := io.ReadFull(gc, make([]byte, 1)); err == nil {
		t.Fatalf("relay exec sent a frame before core.exec.started (%d bytes)", b)
	}
	gc.SetReadDeadline(time.Time{})

	gc.Write(enc(t, req.ID, frame.TypeExecStarted, frame.ExecStarted{Pid: 42}))
	var gotSignal, gotResize bool
	for !gotSignal || !gotResize {
		m := readMessage(t, gc)
		switch m.Type {
		case frame.TypeExecSignal:
			var s frame.ExecSignal
			m.Into(&s)
			if s.Signal != 15 || gotSignal {
				t.Fatalf("signal %d, want one 15", s.Signal)
			}
			gotSignal = true
		case frame.TypeExecResize:
			var rs frame.ExecResize
			m.Into(&rs)
			if rs.Rows != 50 || rs.Cols != 132 || gotResize {
				t.Fatalf("resize %dx%d, want one 50x132", rs.Rows, rs.Cols)
			}
			gotResize = true
		case frame.TypeExecStdin:
		default:
			t.Fatalf("unexpected %s", m.TypeName)
		}
	}
	gc.Write(enc(t, req.ID, frame.TypeExecExited, frame.ExecExited{Code: 143}))
	if code := tty.wait(t); code != 143 {
		t.Fatalf("exit %d, want 143", code)
	}
}

func readMessage(t *testing.T, r net.Conn) frame.Message {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer r.SetReadDeadline(time.Time{})
	m, err := frame.Decode(readFrame(t, r))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestExecResize: under -t the command sees the local terminal's size at
// start and after every change (SIGWINCH → core.exec.resize).
func TestExecResize(t *testing.T) {
	p, _ := builtinRelay(t)
	tty := startPTY(t, 33, 101, "exec", "--socket", p.socket, "-t", "--", "sh", "-c",
		`stty size; trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done`)
	tty.waitOutput(t, "33 101")
	tty.waitOutput(t, "ready")
	tty.setsize(t, 50, 132)
	tty.waitOutput(t, "50 132")
	tty.setsize(t, 20, 70)
	tty.waitOutput(t, "20 70")
	// Ctrl-C travels as a byte through the raw terminal to the remote one.
	tty.pty.Write([]byte{3})
	if code := tty.wait(t); code != 130 {
		t.Fatalf("exit %d after ^C, want 130\n%s", code, tty.out.String())
	}
}

// ptyProc is the binary running on a pseudo-terminal, as in a terminal
// emulator.
type ptyProc struct {
	cmd  *exec.Cmd
	pty  *os.File
	out  *syncbuf.Buffer
	done chan struct{}
}

func startPTY(t *testing.T, rows, cols uint16, args ...string) *ptyProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	f, err := startOnPTY(cmd, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	pp := &ptyProc{cmd: cmd, pty: f, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	go func() {
		io.Copy(pp.out, bufio.NewReader(f))
	}()
	go func() { cmd.Wait(); close(pp.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-pp.done
		f.Close()
	})
	return pp
}

func (pp *ptyProc) waitOutput(t *testing.T, s string) {
	t.Helper()
	waitFor(t, "terminal", pp.out, s)
}

func (pp *ptyProc) setsize(t *testing.T, rows, cols uint16) {
	t.Helper()
	if err := setPTYSize(pp.pty, rows, cols); err != nil {
		t.Fatal(err)
	}
}

func (pp *ptyProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-pp.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("still running; terminal shows %q", pp.out.String())
	}
	return pp.cmd.ProcessState.ExitCode()
}

func startOnPTY(cmd *exec.Cmd, rows, cols uint16) (*os.File, error) {
	return pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
}

func setPTYSize(f *os.File, rows, cols uint16) error {
	return pty.Setsize(f, &pty.Winsize{Rows: rows, Cols: cols})
}

// A race-enabled binary sleeps a second at exit (GORACE atexit_sleep_ms,
// default 1000) to catch late races; these tests start it hundreds of
// times.
func init() {
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
}
