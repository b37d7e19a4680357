package interop

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// runMsb runs exec cases through upstream's msb CLI. msb execs only in a
// sandbox its state database lists as running, at the socket path it
// derives from the sandbox's name, so the test gives msb a private HOME,
// serves the relay at that path and registers the relay's process there as
// a running sandbox. The rows are the least msb 0.6.x accepts (a config
// naming the sandbox, a running run with a live pid); a later msb may want
// more.
func runMsb(t *testing.T, pkgs, sdk, bin, mode string, relayArgs []string) {
	msb := filepath.Join(pkgs, "node_modules", "@superradcompany", "microsandbox-linux-x64-gnu", "bin", "msb")
	home, err := os.MkdirTemp("", "msb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	env := append(os.Environ(), "HOME="+home)
	const name = "interop"

	run := func(stdin []byte, args ...string) (stdout, stderr string, code int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, msb, args...)
		cmd.Env = env
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		err := cmd.Run()
		code = cmd.ProcessState.ExitCode()
		if err != nil && code < 0 {
			t.Fatalf("msb %v: %v\n%s", args, err, e.Bytes())
		}
		return o.String(), e.String(), code
	}

	// msb ls creates the state database; the SDK names the socket path.
	if _, e, code := run(nil, "ls"); code != 0 {
		t.Fatalf("msb ls: exit %d\n%s", code, e)
	}
	node := exec.Command("node", "--input-type=module", "-e",
		fmt.Sprintf("const m = await import(%q); console.log(m.AgentClient.socketPath(%q));", sdk, name))
	node.Env = env
	out, err := node.CombinedOutput()
	socket := strings.TrimSpace(string(out))
	if err != nil || !strings.HasPrefix(socket, home) {
		t.Fatalf("socket path of sandbox %s: %v\n%s", name, err, out)
	}
	if err := os.MkdirAll(filepath.Dir(socket), 0o700); err != nil {
		t.Fatal(err)
	}
	relay := startRelay(t, bin, socket, relayArgs...)
	db := filepath.Join(home, ".microsandbox", "db", "msb.db")
	now := time.Now().UTC().Format(time.RFC3339)
	sql := fmt.Sprintf(`insert into sandbox(name, config, status, created_at, updated_at) values('%[1]s', '{"name":"%[1]s"}', 'Running', '%[2]s', '%[2]s');
insert into run(sandbox_id, pid, status, started_at) values((select id from sandbox where name = '%[1]s'), %[3]d, 'Running', '%[2]s');`,
		name, now, relay.cmd.Process.Pid)
	if out, err := exec.Command("sqlite3", db, sql).CombinedOutput(); err != nil {
		t.Fatalf("register the relay in msb's database: %v\n%s", err, out)
	}

	// --warn adds the agent client's own log line about the fallback to
	// the CLI's warning.
	var warnings []string
	note := func(stderr string) {
		for _, l := range strings.Split(stderr, "\n") {
			if strings.Contains(l, legacyWarning) {
				warnings = append(warnings, l)
			}
		}
	}

	o, e, code := run(nil, "--warn", "exec", name, "--", "echo", "hello from msb")
	note(e)
	if code != 0 || o != "hello from msb\n" {
		t.Errorf("echo: exit %d stdout %q stderr %q", code, o, e)
	}

	o, e, code = run(nil, "--warn", "exec", name, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	note(e)
	if code != 3 || o != "out\n" || !strings.Contains(e, "err\n") {
		t.Errorf("exit code: exit %d stdout %q stderr %q", code, o, e)
	}

	in := bytes.Repeat([]byte("0123456789abcdef"), 20000)
	o, e, code = run(in, "--warn", "exec", "--stream", name, "--", "sha256sum")
	note(e)
	if want := sha256Line(t, in); code != 0 || o != want {
		t.Errorf("stdin: exit %d stdout %q, want %q; stderr %q", code, o, want, e)
	}

	// --timeout has msb end the command; the relay also kills what a
	// departing client left running, so only the prompt end is asserted.
	start := time.Now()
	o, e, code = run(nil, "--warn", "exec", "--timeout", "1s", name, "--", "sleep", "30")
	note(e)
	if took := time.Since(start); code == 0 || took > 10*time.Second || !strings.Contains(e, "timed out") {
		t.Errorf("timeout: exit %d after %v stdout %q stderr %q", code, took, o, e)
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, n := range []string{"x", "y"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, e, code := run(nil, "--warn", "exec", name, "--", "sh", "-c", fmt.Sprintf("echo %s1; sleep 0.3; echo %s2", n, n))
			mu.Lock()
			defer mu.Unlock()
			note(e)
			if want := n + "1\n" + n + "2\n"; code != 0 || o != want {
				t.Errorf("two at once (%s): exit %d stdout %q stderr %q", n, code, o, e)
			}
		}()
	}
	wg.Wait()

	t.Logf("msb, relay handshake %s: %d legacy warnings, e.g. %q", mode, len(warnings), first(warnings))
	switch mode {
	case "0.4":
		// The fallback upstream marks for removal: exec works, with a warning.
		if len(warnings) == 0 {
			t.Error("msb against a 0.4 relay printed no legacy warning: did it stop falling back?")
		}
	case "0.5":
		if len(warnings) != 0 {
			t.Errorf("msb fell back to the 0.4 handshake against a 0.5 relay: %s", warnings[0])
		}
	}
	relay.stop(t)
}

func sha256Line(t *testing.T, b []byte) string {
	cmd := exec.Command("sha256sum")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
