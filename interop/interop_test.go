package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/internal/syncbuf"
)

// upstreamVersion is the pinned release of the npm packages microsandbox
// and @superradcompany/microsandbox-linux-x64-gnu: the newest version both
// are published at. RELAY_INTEROP_VERSION overrides it.
const upstreamVersion = "0.6.18"

// legacyWarning is how upstream's clients word the 0.4 fallback (the msb
// CLI prints "... was started before microsandbox 0.5; exec/shell still
// work temporarily ..."). Seeing it against a 0.5 relay means the client
// did not recognise the 0.5 handshake.
const legacyWarning = "before microsandbox 0.5"

func TestUpstreamClients(t *testing.T) {
	if os.Getenv("RELAY_INTEROP") != "1" {
		t.Skip("set RELAY_INTEROP=1 (make interop) to run upstream's published clients against the relay")
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("upstream's prebuilt clients used here are linux-x64-gnu only, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	for _, tool := range []string{"node", "npm", "sqlite3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("interop needs %s on PATH: %v", tool, err)
		}
	}
	version := upstreamVersion
	if v := os.Getenv("RELAY_INTEROP_VERSION"); v != "" {
		version = v
	}
	pkgs := install(t, version)
	sdk := filepath.Join(pkgs, "node_modules", "microsandbox", "dist", "index.js")
	bin := buildRelay(t)
	hasFlag := hasHandshakeFlag(t, bin)

	for _, mode := range []string{"0.4", "0.5"} {
		t.Run("handshake="+mode, func(t *testing.T) {
			var args []string
			switch {
			case hasFlag:
				args = append(args, "--handshake", mode)
			case mode == "0.5":
				t.Skip("relay serve has no --handshake flag yet: the 0.5 handshake has not landed")
			}
			t.Run("sdk", func(t *testing.T) {
				relay := startRelay(t, bin, "", args...)
				rep, stderr := runClients(t, sdk, relay.socket)
				t.Logf("upstream SDK %s, relay handshake %s: %d cases; SDK stderr: %q", version, mode, len(rep.Cases), stderr)
				checkCases(t, rep, mode)
				if mode == "0.5" && strings.Contains(stderr, legacyWarning) {
					t.Errorf("the SDK fell back to the 0.4 handshake against a 0.5 relay: %s", stderr)
				}
				relay.stop(t)
			})
			t.Run("msb", func(t *testing.T) {
				runMsb(t, pkgs, sdk, bin, mode, args)
			})
		})
	}
}

// session is what clients.mjs reports of one exec session.
type session struct {
	ID     uint32   `json:"id"`
	Pid    int      `json:"pid"`
	Stdout string   `json:"stdout"`
	Stderr string   `json:"stderr"`
	Types  []string `json:"types"`
	Code   *int32   `json:"code"`
	Failed any      `json:"failed"`
}

type result struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`
	Ms    int    `json:"ms"`
	session
	StdoutMatches bool    `json:"stdoutMatches"`
	StdoutLength  int     `json:"stdoutLength"`
	First         session `json:"first"`
	Second        session `json:"second"`
}

type report struct {
	Ready struct {
		V uint64 `json:"v"`
		T string `json:"t"`
	} `json:"ready"`
	Cases []result `json:"cases"`
}

// checkCases asserts every case's outcome. The second of two concurrent
// clients sits in slot 1, whose first id tells the form the SDK used: the
// legacy fallback allocates from offset+1 = frame.Step+1, the 0.5 form
// from frame.SlotRange05(1).
func checkCases(t *testing.T, rep report, mode string) {
	t.Helper()
	if rep.Ready.T != "core.ready" || rep.Ready.V < 1 {
		t.Errorf("cached ready frame: %+v", rep.Ready)
	}
	seen := map[string]bool{}
	for _, c := range rep.Cases {
		seen[c.Name] = true
		if !c.OK {
			t.Errorf("%s: %s", c.Name, c.Error)
			continue
		}
		switch c.Name {
		case "echo":
			wantExit(t, c.Name, c.session, 0)
			if c.Stdout != "hello from upstream's SDK\n" || c.Stderr != "" {
				t.Errorf("echo: stdout %q stderr %q", c.Stdout, c.Stderr)
			}
		case "exit_code":
			wantExit(t, c.Name, c.session, 3)
			if c.Stdout != "out\n" || c.Stderr != "err\n" {
				t.Errorf("exit_code: stdout %q stderr %q", c.Stdout, c.Stderr)
			}
		case "stdin":
			wantExit(t, c.Name, c.session, 0)
			if !c.StdoutMatches || c.StdoutLength != 200020 {
				t.Errorf("stdin: cat echoed %d bytes, matches %v", c.StdoutLength, c.StdoutMatches)
			}
		case "signal":
			wantExit(t, c.Name, c.session, 128+int32(syscall.SIGTERM))
			if c.Ms > 10000 {
				t.Errorf("signal: sleep 30 took %d ms to die of SIGTERM", c.Ms)
			}
		case "two_clients":
			wantExit(t, c.Name+" first", c.First, 0)
			wantExit(t, c.Name+" second", c.Second, 0)
			if c.First.Stdout != "a1\na2\n" || c.Second.Stdout != "b1\nb2\n" {
				t.Errorf("two_clients: outputs %q and %q", c.First.Stdout, c.Second.Stdout)
			}
			want := frame.Step + 1
			if mode == "0.5" {
				want, _ = frame.SlotRange05(1)
			}
			if c.Second.ID != want {
				t.Errorf("two_clients: the second client's first id is %d, want %d for the %s form", c.Second.ID, want, mode)
			}
			if c.First.ID == 0 || c.First.ID >= 1<<25 {
				t.Errorf("two_clients: the first client's id %d is not in slot 0", c.First.ID)
			}
		default:
			t.Errorf("unexpected case %q", c.Name)
		}
	}
	for _, name := range []string{"echo", "exit_code", "stdin", "signal", "two_clients"} {
		if !seen[name] {
			t.Errorf("case %s did not run", name)
		}
	}
}

func wantExit(t *testing.T, name string, s session, code int32) {
	t.Helper()
	if s.Code == nil || *s.Code != code || s.Failed != nil {
		t.Errorf("%s: exit %v failed %v, want exit %d", name, s.Code, s.Failed, code)
	}
	if len(s.Types) < 2 || s.Types[0] != "core.exec.started" || s.Types[len(s.Types)-1] != "core.exec.exited" || s.Pid == 0 {
		t.Errorf("%s: frames %v pid %d", name, s.Types, s.Pid)
	}
}

// runClients runs clients.mjs and returns its report and its stderr.
func runClients(t *testing.T, sdk, socket string) (report, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "node", filepath.Join("testdata", "clients.mjs"), sdk, socket)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("clients.mjs: %v\nstdout: %s\nstderr: %s", err, stdout.Bytes(), stderr.Bytes())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("clients.mjs report: %v\n%s", err, stdout.Bytes())
	}
	return rep, stderr.String()
}

// install puts the two npm packages at version into the cache, once; it
// returns the directory holding node_modules.
func install(t *testing.T, version string) string {
	t.Helper()
	root := os.Getenv("RELAY_INTEROP_CACHE")
	if root == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("no cache directory for the npm packages (set RELAY_INTEROP_CACHE): %v", err)
		}
		root = filepath.Join(cache, "agentrelay-interop")
	}
	dir := filepath.Join(root, "microsandbox-"+version)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// Install beside the final directory and rename, so that an interrupted
	// install is never taken for a finished one.
	tmp, err := os.MkdirTemp(root, ".install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if err := os.WriteFile(filepath.Join(tmp, "package.json"), []byte(`{"private": true}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	// The packages declare node >= 22; the raw agent client runs on the
	// node 20 found here, so the engine check must only warn.
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
		"--engine-strict=false", "--loglevel=error", "--prefix", tmp,
		"microsandbox@"+version, "@superradcompany/microsandbox-linux-x64-gnu@"+version)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ping, perr := exec.CommandContext(ctx, "npm", "ping").CombinedOutput(); perr != nil {
			t.Skipf("npm cannot reach its registry, so upstream's clients cannot be installed: %v\n%s", perr, ping)
		}
		t.Fatalf("npm install of microsandbox %s: %v\n%s", version, err, out)
	}
	size := dirSize(filepath.Join(tmp, "node_modules"))
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(version+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory without the marker is an install that did not finish.
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		os.RemoveAll(dir)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, ".complete")); serr != nil {
			t.Fatalf("cache the npm packages: %v", err)
		}
		// Another run finished first; its copy is as good.
	}
	t.Logf("installed microsandbox %s from npm in %v: %.1f MiB in %s", version,
		time.Since(start).Round(100*time.Millisecond), float64(size)/(1<<20), dir)
	return dir
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// buildRelay builds the relay binary from this tree.
func buildRelay(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "relay")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/agentrelay/agentrelay/cmd/relay").CombinedOutput()
	if err != nil {
		t.Fatalf("build relay: %v\n%s", err, out)
	}
	return bin
}

// hasHandshakeFlag reports whether relay serve offers --handshake.
func hasHandshakeFlag(t *testing.T, bin string) bool {
	t.Helper()
	out, _ := exec.Command(bin, "serve", "--help").CombinedOutput()
	if !strings.Contains(string(out), "-socket") {
		t.Fatalf("relay serve --help does not list its flags:\n%s", out)
	}
	return strings.Contains(string(out), "-handshake")
}

type relayProc struct {
	cmd    *exec.Cmd
	socket string
	log    *syncbuf.Buffer
	done   chan error
}

// startRelay runs relay serve on the builtin guest and waits until its
// socket, at socket or in a new directory if that is empty, accepts.
func startRelay(t *testing.T, bin, socket string, args ...string) *relayProc {
	t.Helper()
	if socket == "" {
		// A short directory: a Unix socket path has at most 107 bytes.
		dir, err := os.MkdirTemp("", "interop")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		socket = filepath.Join(dir, "agent.sock")
	}
	p := &relayProc{socket: socket, log: &syncbuf.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"serve", "--socket", p.socket, "--guest", "builtin"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		p.done <- nil
		if t.Failed() {
			t.Logf("relay log:\n%s", p.log.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("unix", p.socket)
		if err == nil {
			c.Close()
			// The probe took a slot and left; the relay frees it at once.
			return p
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("relay exited before listening: %v\n%s", err, p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay socket not ready: %v\n%s", err, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and expects a clean exit and a log without errors.
func (p *relayProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Errorf("relay exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("relay did not exit within 10s of SIGTERM")
	}
	if log := p.log.String(); strings.Contains(log, "level=ERROR") {
		t.Errorf("relay logged errors:\n%s", log)
	}
}
