package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
)

// startAgent runs an Agent on a fresh console with the test as the host.
// Cleanup ends it (closing Rx, the host going away) and checks that Run
// returned and left no goroutine behind.
func startAgent(t *testing.T, capacity int, opts Options) *testHost {
	t.Helper()
	return startAgentOn(t, newTestHost(t, capacity), opts)
}

func startAgentOn(t *testing.T, h *testHost, opts Options) *testHost {
	t.Helper()
	before := runtime.NumGoroutine() - 1 // h's reader
	done := make(chan error, 1)
	go func() { done <- New(opts).ServeConsole(context.Background(), h.c) }()
	t.Cleanup(func() {
		h.c.Rx.CloseWrite()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after the host closed Rx")
		}
		checkGoroutines(t, before)
	})
	h.expectReady()
	return h
}

// checkGoroutines waits for the goroutine count to come back to before
// (the host reader, counted by Cleanup order, is still running: +1).
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before+1 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sendExec(h *testHost, id uint32, req frame.ExecRequest) {
	h.t.Helper()
	h.send(id, frame.TypeExecRequest, &req)
}

func ptr[T any](v T) *T { return &v }

func wantExit(t *testing.T, r result, code int32) {
	t.Helper()
	if r.failed != nil {
		t.Fatalf("failed: %+v (%s)", *r.failed, r.failed.Message)
	}
	if r.started == nil || r.started.Pid == 0 {
		t.Fatal("no core.exec.started with a pid")
	}
	if r.code == nil || *r.code != code {
		t.Fatalf("exit code %v, want %d (stdout %q, stderr %q)", r.code, code, r.stdout, r.stderr)
	}
}

func TestAgentEchoHello(t *testing.T) {
	h := startAgent(t, 0, Options{})
	sendExec(h, 1, frame.ExecRequest{Cmd: "echo", Args: []string{"hello"}})
	r := h.collect(1, 10*time.Second)
	wantExit(t, r, 0)
	if string(r.stdout) != "hello\n" || len(r.stderr) != 0 {
		t.Fatalf("stdout %q stderr %q", r.stdout, r.stderr)
	}
}

func TestAgentStdoutStderrExitCode(t *testing.T) {
	h := startAgent(t, 0, Options{})
	sendExec(h, 5, frame.ExecRequest{Cmd: "sh", Args: []string{"-c", "echo out; echo err >&2; exit 3"}})
	r := h.collect(5, 10*time.Second)
	wantExit(t, r, 3)
	if string(r.stdout) != "out\n" || string(r.stderr) != "err\n" {
		t.Fatalf("stdout %q stderr %q", r.stdout, r.stderr)
	}
}

func TestAgentStdinEOF(t *testing.T) {
	h := startAgent(t, 0, Options{})
	sendExec(h, 9, frame.ExecRequest{Cmd: "cat"})
	m := h.next(5 * time.Second)
	if m.Type != frame.TypeExecStarted {
		t.Fatalf("got %v", m.TypeName)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB: several pipe-fulls, several chunks
	h.send(9, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("line one\n")})
	h.send(9, frame.TypeExecStdin, frame.ExecStdin{Data: big})
	h.send(9, frame.TypeExecStdin, frame.ExecStdin{}) // EOF: cat exits
	h.send(9, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("after EOF\n")})
	var r result
	r.started = &frame.ExecStarted{Pid: 1}
	r = collectAfterStart(t, h, 9, r)
	wantExit(t, r, 0)
	if want := append([]byte("line one\n"), big...); !bytes.Equal(r.stdout, want) {
		t.Fatalf("cat echoed %d bytes, want %d", len(r.stdout), len(want))
	}
}

// collectAfterStart is collect for a session whose started message the
// test already took.
func collectAfterStart(t *testing.T, h *testHost, id uint32, r result) result {
	t.Helper()
	for {
		m := h.next(10 * time.Second)
		if m.ID != id {
			t.Fatalf("message for id %d", m.ID)
		}
		switch m.Type {
		case frame.TypeExecStdout:
			var p frame.ExecStdout
			mustInto(t, m, &p)
			r.stdout = append(r.stdout, p.Data...)
		case frame.TypeExecStderr:
			var p frame.ExecStderr
			mustInto(t, m, &p)
			r.stderr = append(r.stderr, p.Data...)
		case frame.TypeExecExited:
			var p frame.ExecExited
			mustInto(t, m, &p)
			r.code = &p.Code
			return r
		default:
			t.Fatalf("unexpected %v", m.TypeName)
		}
	}
}

func TestAgentFailures(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "notexec")
	os.WriteFile(notExec, []byte("#!/bin/sh\necho hi\n"), 0o644)
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte{0x7f, 'E', 'L', 'F', 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 0o755)

	h := startAgent(t, 0, Options{})
	for i, tc := range []struct {
		name      string
		req       frame.ExecRequest
		kind      string
		errnoName string
		stage     string
	}{
		{"missing command", frame.ExecRequest{Cmd: "no-such-command-agentrelay"}, frame.FailNotFound, "ENOENT", "execvp"},
		{"missing path", frame.ExecRequest{Cmd: "/no/such/binary"}, frame.FailNotFound, "ENOENT", "execvp"},
		{"missing cwd", frame.ExecRequest{Cmd: "true", Cwd: ptr(filepath.Join(dir, "nope"))}, frame.FailBadCwd, "ENOENT", "chdir"},
		{"cwd is a file", frame.ExecRequest{Cmd: "true", Cwd: &notExec}, frame.FailBadCwd, "ENOTDIR", "chdir"},
		{"not executable", frame.ExecRequest{Cmd: notExec}, frame.FailPermissionDenied, "EACCES", "execvp"},
		{"exec format", frame.ExecRequest{Cmd: garbage}, frame.FailNotExecutable, "ENOEXEC", "execvp"},
		{"bad env", frame.ExecRequest{Cmd: "true", Env: []string{"NOEQUALS"}}, frame.FailBadArgs, "", "args"},
		{"unknown rlimit", frame.ExecRequest{Cmd: "true", Rlimits: []frame.Rlimit{{Resource: "bogus", Soft: 1, Hard: 1}}}, frame.FailBadArgs, "", "args"},
		{"unknown user", frame.ExecRequest{Cmd: "true", User: ptr("no-such-user-agentrelay")}, frame.FailUserSetupFailed, "", "user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := uint32(100 + i)
			sendExec(h, id, tc.req)
			r := h.collect(id, 10*time.Second)
			if r.failed == nil {
				t.Fatalf("no core.exec.failed: %+v", r)
			}
			f := r.failed
			if f.Kind != tc.kind {
				t.Errorf("kind %q, want %q (%s)", f.Kind, tc.kind, f.Message)
			}
			if tc.errnoName != "" && (f.ErrnoName == nil || *f.ErrnoName != tc.errnoName || f.Errno == nil || *f.Errno == 0) {
				t.Errorf("errno %v %v, want %s", f.Errno, f.ErrnoName, tc.errnoName)
			}
			if f.Stage == nil || *f.Stage != tc.stage {
				t.Errorf("stage %v, want %q", f.Stage, tc.stage)
			}
			if f.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestAgentSignal(t *testing.T) {
	h := startAgent(t, 0, Options{})
	sendExec(h, 3, frame.ExecRequest{Cmd: "sleep", Args: []string{"100"}})
	if m := h.next(5 * time.Second); m.Type != frame.TypeExecStarted {
		t.Fatalf("got %v", m.TypeName)
	}
	start := time.Now()
	h.send(3, frame.TypeExecSignal, frame.ExecSignal{Signal: 9})
	r := collectAfterStart(t, h, 3, result{started: &frame.ExecStarted{Pid: 1}})
	wantExit(t, r, 128+9)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v to die", d)
	}
}

func TestAgentSignalReachesProcessGroup(t *testing.T) {
	h := startAgent(t, 0, Options{})
	// The shell waits for its child; killing only the shell would leave
	// sleep holding stdout, and the session would need OutputGrace.
	sendExec(h, 4, frame.ExecRequest{Cmd: "sh", Args: []string{"-c", "sleep 100; echo not reached"}})
	h.next(5 * time.Second)
	time.Sleep(50 * time.Millisecond) // let sh start sleep
	h.send(4, frame.TypeExecSignal, frame.ExecSignal{Signal: int32(syscall.SIGTERM)})
	r := collectAfterStart(t, h, 4, result{started: &frame.ExecStarted{Pid: 1}})
	wantExit(t, r, 128+int32(syscall.SIGTERM))
	if len(r.stdout) != 0 {
		t.Fatalf("stdout %q", r.stdout)
	}
}

func TestAgentTTY(t *testing.T) {
	h := startAgent(t, 0, Options{})
	sendExec(h, 7, frame.ExecRequest{Cmd: "sh", Args: []string{"-c", "tty; stty size; echo to-stderr >&2"}, TTY: true, Rows: 33, Cols: 101})
	r := h.collect(7, 10*time.Second)
	wantExit(t, r, 0)
	out := strings.ReplaceAll(string(r.stdout), "\r\n", "\n")
	if !regexp.MustCompile(`^/dev/pts/\d+\n33 101\nto-stderr\n$`).MatchString(out) {
		t.Fatalf("tty output %q", out)
	}
	if len(r.stderr) != 0 {
		t.Fatalf("stderr frames in tty mode: %q", r.stderr)
	}
}

func TestAgentTTYResizeAndInput(t *testing.T) {
	h := startAgent(t, 0, Options{})
	// read waits for a line; the resize comes first, so stty sees it.
	sendExec(h, 8, frame.ExecRequest{Cmd: "sh", Args: []string{"-c", "read x; stty size; echo got $x"}, TTY: true})
	h.next(5 * time.Second)
	h.send(8, frame.TypeExecResize, frame.ExecResize{Rows: 50, Cols: 200})
	h.send(8, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("hi\n")})
	r := collectAfterStart(t, h, 8, result{started: &frame.ExecStarted{Pid: 1}})
	wantExit(t, r, 0)
	out := strings.ReplaceAll(string(r.stdout), "\r\n", "\n")
	if !strings.HasSuffix(out, "50 200\ngot hi\n") {
		t.Fatalf("tty output %q", out)
	}
}

func TestAgentTTYEOF(t *testing.T) {
	h := startAgent(t, 0, Options{})
	sendExec(h, 10, frame.ExecRequest{Cmd: "cat", TTY: true})
	h.next(5 * time.Second)
	h.send(10, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("abc\n")})
	h.send(10, frame.TypeExecStdin, frame.ExecStdin{}) // ^D at the start of a line
	r := collectAfterStart(t, h, 10, result{started: &frame.ExecStarted{Pid: 1}})
	wantExit(t, r, 0)
	if out := strings.ReplaceAll(string(r.stdout), "\r\n", "\n"); out != "abc\nabc\n" {
		t.Fatalf("tty output %q (terminal echo, then cat)", out)
	}
}

func TestAgentEnvCwdRlimits(t *testing.T) {
	dir := t.TempDir()
	h := startAgent(t, 0, Options{})
	sendExec(h, 11, frame.ExecRequest{
		Cmd:     "sh",
		Args:    []string{"-c", `echo "$FOO|$PATH|$(pwd)|$(ulimit -n)|$(ulimit -Hn)"`},
		Env:     []string{"FOO=bar"},
		Cwd:     &dir,
		Rlimits: []frame.Rlimit{{Resource: "nofile", Soft: 77, Hard: 99}},
	})
	r := h.collect(11, 10*time.Second)
	wantExit(t, r, 0)
	if want := "bar|" + defaultPath + "|" + dir + "|77|99\n"; string(r.stdout) != want {
		t.Fatalf("stdout %q, want %q", r.stdout, want)
	}
}

func TestAgentBackgroundChildDoesNotHoldExit(t *testing.T) {
	for _, tty := range []bool{false, true} {
		h := startAgent(t, 0, Options{OutputGrace: 100 * time.Millisecond})
		start := time.Now()
		// The background sleep keeps stdout (or the terminal) open
		// after sh exits.
		// Ignoring SIGHUP, it outlives the terminal's hangup too.
		sendExec(h, 12, frame.ExecRequest{Cmd: "sh", Args: []string{"-c", "trap '' HUP; sleep 3 & echo bye"}, TTY: tty})
		r := h.collect(12, 10*time.Second)
		wantExit(t, r, 0)
		if out := strings.ReplaceAll(string(r.stdout), "\r\n", "\n"); out != "bye\n" {
			t.Fatalf("tty %v: stdout %q", tty, r.stdout)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("tty %v: exited after %v: held back by the background child", tty, d)
		}
	}
}

func TestAgentOutputOutlivesGraceWhileTxIsFull(t *testing.T) {
	// The host does not read for a while: the process exits long before
	// its output has gone through the 4 KiB Tx. The first burst is being
	// sent (stuck on Tx) when the second lands in the pipe and the
	// process exits; a grace of 10 ms must not cut off output that was
	// already written.
	h := newPausedHost(t, 4<<10)
	done := make(chan error, 1)
	go func() {
		done <- New(Options{OutputGrace: 10 * time.Millisecond}).ServeConsole(context.Background(), h.c)
	}()
	t.Cleanup(func() {
		h.c.Rx.CloseWrite()
		<-done
	})
	sendExec(h, 1, frame.ExecRequest{Cmd: "sh", Args: []string{"-c", "head -c 30000 /dev/zero; sleep 0.05; head -c 20000 /dev/zero"}})
	time.Sleep(300 * time.Millisecond)
	h.start()
	h.expectReady()
	r := h.collect(1, 10*time.Second)
	wantExit(t, r, 0)
	if len(r.stdout) != 50000 {
		t.Fatalf("%d bytes of output, want 50000", len(r.stdout))
	}
}

func TestAgentConcurrentSessionsTinyRing(t *testing.T) {
	// 4 KiB rings: every session's output waits for Tx space; frames of
	// different sessions must not interleave or drop.
	h := startAgent(t, 4<<10, Options{})
	const n = 6
	for i := range n {
		sendExec(h, uint32(20+i), frame.ExecRequest{Cmd: "sh", Args: []string{"-c", "head -c 200000 /dev/zero; echo done >&2"}})
	}
	got := map[uint32]*result{}
	exited := 0
	for exited < n {
		m := h.next(20 * time.Second)
		r := got[m.ID]
		if r == nil {
			r = &result{}
			got[m.ID] = r
		}
		switch m.Type {
		case frame.TypeExecStarted:
			r.started = &frame.ExecStarted{}
		case frame.TypeExecStdout:
			var p frame.ExecStdout
			mustInto(t, m, &p)
			r.stdout = append(r.stdout, p.Data...)
		case frame.TypeExecStderr:
			var p frame.ExecStderr
			mustInto(t, m, &p)
			r.stderr = append(r.stderr, p.Data...)
		case frame.TypeExecExited:
			var p frame.ExecExited
			mustInto(t, m, &p)
			r.code = &p.Code
			exited++
		default:
			t.Fatalf("unexpected %v", m.TypeName)
		}
	}
	for i := range n {
		r := got[uint32(20+i)]
		if r == nil || r.started == nil || r.code == nil || *r.code != 0 || len(r.stdout) != 200000 || string(r.stderr) != "done\n" {
			t.Fatalf("session %d: %+v", 20+i, r)
		}
	}
}

func TestAgentShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	h := newTestHost(t, 0)
	done := make(chan error, 1)
	go func() {
		done <- New(Options{ShutdownGrace: 500 * time.Millisecond}).ServeConsole(context.Background(), h.c)
	}()
	h.expectReady()
	sendExec(h, 1, frame.ExecRequest{Cmd: "sleep", Args: []string{"100"}})
	// This one ignores SIGTERM: it gets SIGKILL after the grace.
	sendExec(h, 2, frame.ExecRequest{Cmd: "sh", Args: []string{"-c", "trap '' TERM; echo armed; sleep 100 & wait"}})
	// Wait until session 2's trap is set (it says so), so SIGTERM cannot
	// arrive before it.
	for {
		m := h.next(5 * time.Second)
		if m.Type == frame.TypeExecStdout && m.ID == 2 {
			break
		}
	}
	start := time.Now()
	h.send(0, frame.TypeShutdown, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after core.shutdown")
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 5*time.Second {
		t.Errorf("shutdown took %v, want about the 500ms grace", d)
	}
	codes := map[uint32]int32{}
	for m := range h.msgs {
		if m.Type == frame.TypeExecExited {
			var p frame.ExecExited
			mustInto(t, m, &p)
			codes[m.ID] = p.Code
		}
	}
	if codes[1] != 128+int32(syscall.SIGTERM) || codes[2] != 128+int32(syscall.SIGKILL) {
		t.Fatalf("exit codes %v, want 1: SIGTERM, 2: SIGKILL", codes)
	}
	checkGoroutines(t, before)
}

func TestAgentContextCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	h := newTestHost(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(Options{}).ServeConsole(ctx, h.c) }()
	h.expectReady()
	sendExec(h, 1, frame.ExecRequest{Cmd: "sleep", Args: []string{"100"}})
	h.next(5 * time.Second)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	checkGoroutines(t, before)
}

func TestAgentIgnoresUnknownSessions(t *testing.T) {
	h := startAgent(t, 0, Options{})
	h.send(77, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("x")})
	h.send(77, frame.TypeExecSignal, frame.ExecSignal{Signal: 9})
	h.send(77, frame.TypeExecResize, frame.ExecResize{Rows: 1, Cols: 1})
	h.send(77, frame.TypeFsData, frame.FsData{Data: []byte("x")})
	sendExec(h, 78, frame.ExecRequest{Cmd: "true"})
	wantExit(t, h.collect(78, 10*time.Second), 0)
}

func TestAgentUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	root, err := user.LookupId("0")
	if err != nil {
		t.Skip("no passwd entry for root")
	}
	h := startAgent(t, 0, Options{})
	asNobody := nobody.Uid + " " + nobody.Gid + " " + nobody.HomeDir + "\n"
	for i, tc := range []struct {
		user, want string
	}{
		{"nobody", asNobody},
		{nobody.Uid, asNobody},
		{nobody.Uid + ":" + nobody.Gid, asNobody},
		{root.Username, "0 0 " + root.HomeDir + "\n"},
	} {
		id := uint32(40 + i)
		sendExec(h, id, frame.ExecRequest{Cmd: "sh", Args: []string{"-c", `echo "$(id -u) $(id -g) $HOME"`}, User: ptr(tc.user)})
		r := h.collect(id, 10*time.Second)
		wantExit(t, r, 0)
		if string(r.stdout) != tc.want {
			t.Errorf("user %q: %q, want %q", tc.user, r.stdout, tc.want)
		}
	}
}

func TestAgentCorruptStream(t *testing.T) {
	h := newTestHost(t, 0)
	done := make(chan error, 1)
	go func() { done <- New(Options{}).ServeConsole(context.Background(), h.c) }()
	h.expectReady()
	sendExec(h, 1, frame.ExecRequest{Cmd: "sleep", Args: []string{"100"}})
	h.next(5 * time.Second)
	// A length of 2 is shorter than a header: the framing is lost.
	h.c.Rx.WriteAll([]byte{0, 0, 0, 2, 0, 0}, time.Now().Add(5*time.Second))
	select {
	case err := <-done:
		if !errors.Is(err, ErrCorruptStream) {
			t.Fatalf("Run: %v, want ErrCorruptStream", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run went on after a corrupt frame")
	}
	// The session was killed on the way out and still reported.
	r := collectAfterStart(t, h, 1, result{started: &frame.ExecStarted{Pid: 1}})
	wantExit(t, r, 128+9)
}

// TestAgentContextCancelWhileWriteBlocked: a host that stopped reading
// leaves a session's send blocked inside the connection's Write, holding
// the send lock; cancelling must still end Serve.
func TestAgentContextCancelWhileWriteBlocked(t *testing.T) {
	h := newPausedHost(t, 4<<10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(Options{}).ServeConsole(ctx, h.c) }()
	sendExec(h, 1, frame.ExecRequest{Cmd: "sh", Args: []string{"-c", "while :; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done"}})
	// Tx (4 KiB) fills and the sender blocks in it.
	deadline := time.Now().Add(10 * time.Second)
	for h.c.Tx.Len() < 3<<10 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel while a write was blocked")
	}
}
