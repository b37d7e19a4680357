package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/agentrelay/agentrelay/agent"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/internal/syncbuf"
)

// startRelayAt is startRelay on a socket path of the caller's choosing.
func startRelayAt(t *testing.T, socket string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{socket: socket, dir: filepath.Dir(socket), stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve", "--socket", socket}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("relay output:\n%s", p.stderr.String())
		}
	})
	return p
}

// guestConn waits for the relay to connect to the fake guest.
func (p *proc) guestConn(t *testing.T, g *fakeGuest) net.Conn {
	t.Helper()
	select {
	case c := <-g.conn:
		return c
	case <-p.done:
		t.Fatalf("relay exited before connecting to the guest: %v\n%s", p.err, p.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("relay never connected to the guest\n%s", p.stderr.String())
	}
	return nil
}

// waitLog waits until the relay's stderr contains s.
func (p *proc) waitLog(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.stderr.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("relay never logged %q:\n%s", s, p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestSecondRelayRefusesLiveSocket: a second relay on a live relay's socket
// exits non-zero saying why and leaves the first serving; once the first is
// gone without removing its socket (SIGKILL), a third replaces the stale
// socket and serves.
func TestSecondRelayRefusesLiveSocket(t *testing.T) {
	first := startRelay(t, "--guest", "echo")
	first.waitSocket(t)
	ino := inode(t, first.socket)

	second := startRelayAt(t, first.socket, nil, "--guest", "echo")
	if code := second.wait(t, 10*time.Second); code == 0 {
		t.Fatalf("second relay exit code %d, want non-zero", code)
	}
	if !strings.Contains(second.stderr.String(), "socket in use by a running relay") {
		t.Fatalf("second relay does not say why:\n%s", second.stderr.String())
	}
	if inode(t, first.socket) != ino {
		t.Fatal("the second relay replaced the live socket")
	}
	c, off := dialRelay(t, first.socket)
	f := enc(t, off+1, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("still here")})
	c.Write(f)
	if got := readFrame(t, c); !bytes.Equal(got, f) {
		t.Fatalf("first relay after the second's attempt echoed %x", got)
	}
	c.Close()

	first.cmd.Process.Kill()
	first.wait(t, 10*time.Second)
	if _, err := os.Lstat(first.socket); err != nil {
		t.Fatalf("SIGKILL left no stale socket to test with: %v", err)
	}
	third := startRelayAt(t, first.socket, nil, "--guest", "echo")
	third.waitSocket(t)
	third.cmd.Process.Signal(syscall.SIGTERM)
	if code := third.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("third relay exit code %d", code)
	}
}

// runServe runs the binary to its exit (at most 10 s) with env added.
func runServe(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%q still running after 10s:\n%s", args, e.String())
	}
	return cmd.ProcessState.ExitCode(), o.String(), e.String()
}

// TestServeRefusesBeforeSideEffects: every bad flag, environment or socket
// location is refused with the exit code and a message saying what is
// wrong, before anything exists: no socket, no socket directory, no
// exec.log directory, no guest.
func TestServeRefusesBeforeSideEffects(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	base := privateDir(t)
	long := filepath.Join(base, "sub", strings.Repeat("x", 110))
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"debug-addr unparsable", nil, []string{"--debug-addr", "nonsense"}, 2, "--debug-addr"},
		{"debug-addr bad port", nil, []string{"--debug-addr", "127.0.0.1:http2x"}, 2, "bad port"},
		{"debug-addr not loopback", nil, []string{"--debug-addr", "0.0.0.0:0"}, 2, "must be a loopback address"},
		{"debug-addr in use", nil, []string{"--debug-addr", busy.Addr().String()}, 1, "address already in use"},
		{"positional", nil, []string{"extra"}, 2, `unexpected argument "extra"`},
		{"accept-wait zero", nil, []string{"--accept-wait", "0"}, 2, "--accept-wait"},
		{"accept-wait long", nil, []string{"--accept-wait", "1h"}, 2, "above the maximum"},
		{"client-buffer small", nil, []string{"--client-buffer", "1MiB"}, 2, "--client-buffer"},
		{"client-buffer huge", nil, []string{"--client-buffer", "2GiB"}, 2, "--client-buffer"},
		{"client-buffer junk", nil, []string{"--client-buffer", "lots"}, 2, "--client-buffer"},
		{"quarantine-timeout short", nil, []string{"--quarantine-timeout", "1ms"}, 2, "below the minimum"},
		{"allow-uid negative", nil, []string{"--allow-uid", "-1"}, 2, "--allow-uid"},
		{"allow-uid not a number", nil, []string{"--allow-uid", "root"}, 2, "--allow-uid"},
		{"allow-uid (uid_t)-1", nil, []string{"--allow-uid", "4294967295"}, 2, "--allow-uid"},
		{"log-format", nil, []string{"--log-format", "xml"}, 2, "--log-format"},
		{"RELAY_LOG_LEVEL", []string{"RELAY_LOG_LEVEL=loud"}, nil, 2, `RELAY_LOG_LEVEL="loud"`},
		{"socket path too long", nil, []string{"--socket", long}, 2, "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(base, "sub")
			logDir := filepath.Join(base, "log")
			args := append([]string{"serve", "--socket", filepath.Join(dir, "agent.sock"), "--guest", "builtin", "--exec-log", logDir}, tc.args...)
			code, _, stderr := runServe(t, tc.env, args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want %d, with %q in:\n%s", code, tc.code, tc.want, stderr)
			}
			if strings.Contains(stderr, agent.Warning) || strings.Contains(stderr, "level=") {
				t.Fatalf("the relay got past its checks:\n%s", stderr)
			}
			for _, p := range []string{dir, logDir} {
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Fatalf("%s created (%v)", p, err)
				}
			}
		})
	}
}

// TestServeRefusesForeignSocketDirectory: a socket directory owned by
// another user is refused even with mode 0755: its owner could swap the
// socket. Root's own directories are fine.
func TestServeRefusesForeignSocketDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another uid")
	}
	dir := filepath.Join(privateDir(t), "theirs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	code, _, stderr := runServe(t, nil, "serve", "--socket", sock, "--guest", "builtin")
	if code != 1 || !strings.Contains(stderr, "owned by uid 65534") {
		t.Fatalf("exit %d, want 1 and a message naming the owner:\n%s", code, stderr)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket created: %v", err)
	}
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	p := startRelayAt(t, sock, nil, "--guest", "echo")
	p.waitSocket(t)
}

// TestServeHelp: `serve --help` prints every flag in --long form and
// examples to stdout and exits 0, for both binaries.
func TestServeHelp(t *testing.T) {
	baseline := filepath.Join(t.TempDir(), "relay-baseline")
	if out, err := exec.Command("go", "build", "-o", baseline, "../relay-baseline").CombinedOutput(); err != nil {
		t.Fatalf("build relay-baseline: %v\n%s", err, out)
	}
	flags := []string{"--socket", "--guest", "--exec-log", "--ready-timeout", "--debug-addr", "--log-format",
		"--allow-uid", "--accept-wait", "--client-buffer", "--quarantine-timeout", "--help"}
	for _, run := range []struct {
		bin  string
		args []string
	}{{bin, []string{"serve", "--help"}}, {bin, []string{"serve", "-h"}}, {baseline, []string{"--help"}}, {baseline, []string{"serve", "--help"}}} {
		cmd := exec.Command(run.bin, run.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("%s %q: %v\n%s", filepath.Base(run.bin), run.args, err, stderr.String())
		}
		help := string(out)
		for _, f := range flags {
			if !strings.Contains(help, "\n  "+f+" ") && !strings.Contains(help, "\n  "+f+"\n") {
				t.Errorf("%s %q: no %s line:\n%s", filepath.Base(run.bin), run.args, f, help)
			}
		}
		for _, l := range strings.Split(help, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "-") && !strings.HasPrefix(strings.TrimSpace(l), "--") {
				t.Errorf("single-dash flag in help: %q", l)
			}
		}
		if !strings.Contains(help, "Examples:\n") || !strings.Contains(help, filepath.Base(run.bin)+" serve --socket ") {
			t.Errorf("%s %q: no examples:\n%s", filepath.Base(run.bin), run.args, help)
		}
	}
}

// TestAllowUIDFlag: --allow-uid replaces the default list, so a peer with
// our uid is closed before the handshake.
func TestAllowUIDFlag(t *testing.T) {
	p := startRelay(t, "--guest", "echo", "--allow-uid", "54321")
	p.waitLog(t, "relay listening", 10*time.Second)
	p.waitLog(t, "guest ready", 10*time.Second)
	c, err := net.Dial("unix", p.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 4)); err != io.EOF {
		t.Fatalf("a peer not on --allow-uid got %d bytes (%v)", n, err)
	}
	p.waitLog(t, "peer uid not allowed", 5*time.Second)
}

// TestAcceptWaitFlag: the 17th connection is closed after --accept-wait,
// not the default 5 s.
func TestAcceptWaitFlag(t *testing.T) {
	p := startRelay(t, "--guest", "echo", "--accept-wait", "300ms")
	p.waitSocket(t)
	for range frame.MaxClients {
		c, _ := dialRelay(t, p.socket)
		defer c.Close()
	}
	c, err := net.Dial("unix", p.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 4)); err != io.EOF {
		t.Fatalf("17th connection: %d bytes, %v", n, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Fatalf("17th connection closed after %v, want about 300ms", d)
	}
}

// TestQuarantineTimeoutFlag: a departed client's session that the guest
// never ends is forgotten after --quarantine-timeout.
func TestQuarantineTimeoutFlag(t *testing.T) {
	g, path := newFakeGuest(t, 0)
	p := startRelay(t, "--guest", "unix:"+path, "--quarantine-timeout", "300ms")
	gc := p.guestConn(t, g)
	defer gc.Close()
	gc.Write(enc(t, 0, frame.TypeReady, frame.Ready{}))
	p.waitSocket(t)
	c, off := dialRelay(t, p.socket)
	c.Write(enc(t, off+1, frame.TypeExecRequest, frame.ExecRequest{Cmd: "sleep", Args: []string{"100"}, Env: []string{}, Rlimits: []frame.Rlimit{}}))
	readFrame(t, gc)
	start := time.Now()
	c.Close()
	readFrame(t, gc) // the SIGKILL; the guest never answers it
	p.waitLog(t, "quarantine expired", 5*time.Second)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("quarantine expired after %v, want about 300ms", d)
	}
}

// TestClientBufferFlag: --client-buffer reaches the relay: the memory bound
// it logs grows by 16 × the difference.
func TestClientBufferFlag(t *testing.T) {
	bound := func(args ...string) int {
		p := startRelay(t, append([]string{"--guest", "echo"}, args...)...)
		p.waitLog(t, "memory limit", 10*time.Second)
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			if i := strings.Index(l, "bound_mib="); i >= 0 {
				var n int
				fmt.Sscanf(l[i:], "bound_mib=%d", &n)
				return n
			}
		}
		t.Fatalf("no bound_mib:\n%s", p.stderr.String())
		return 0
	}
	// Clients' buffers are bounded together by --output-budget: a larger
	// per-client bound within it costs nothing more, a larger budget does.
	def, big, budget := bound(), bound("--client-buffer", "16MiB"), bound("--output-budget", "128MiB")
	if big != def || budget-def != 64 {
		t.Fatalf("memory bound %d MiB by default, %d MiB with 16 MiB client buffers (want the same), %d MiB with a 128 MiB output budget (want 64 MiB more)", def, big, budget)
	}
	// A client bound past the budget is a usage error.
	p := startRelay(t, "--guest", "echo", "--client-buffer", "100MiB")
	if code := p.wait(t, 10*time.Second); code != 2 || !strings.Contains(p.stderr.String(), "--output-budget") {
		t.Fatalf("--client-buffer above --output-budget: exit %d\n%s", code, p.stderr.String())
	}
}

// jsonLogs parses the relay's stderr as JSON log records, failing on any
// line that is not one.
func jsonLogs(t *testing.T, s string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON record: %q", sc.Text())
		}
		recs = append(recs, m)
	}
	return recs
}

func findRec(recs []map[string]any, msg string, match func(map[string]any) bool) map[string]any {
	for _, r := range recs {
		if r["msg"] == msg && (match == nil || match(r)) {
			return r
		}
	}
	return nil
}

// TestServeLogsJSONAndAudit: with --log-format json every record is JSON;
// connects and disconnects carry slot, uid and pid (and the reason), and
// each exec is logged with its session, argv[0] and exit code.
func TestServeLogsJSONAndAudit(t *testing.T) {
	logDir := privateDir(t)
	p := startRelay(t, "--guest", "builtin", "--exec-log", logDir, "--log-format", "json")
	p.waitSocket(t)
	if _, _, code := relayExec(t, p.socket, "", "--", "sh", "-c", "exit 3"); code != 3 {
		t.Fatalf("exec exit code %d", code)
	}
	relayExec(t, p.socket, "", "--", "/no/such/command")
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t, 10*time.Second)
	recs := jsonLogs(t, p.stderr.String())
	uid := float64(os.Getuid())
	byUID := func(r map[string]any) bool { return r["uid"] == uid && r["pid"].(float64) > 0 && r["slot"] != nil }
	if findRec(recs, "client connected", byUID) == nil {
		t.Fatalf("no client connected record with slot, uid %v and pid:\n%s", uid, p.stderr.String())
	}
	if r := findRec(recs, "client disconnected", byUID); r == nil || r["reason"] == "" || r["reason"] == nil {
		t.Fatalf("no client disconnected record with slot, uid, pid and reason:\n%s", p.stderr.String())
	}
	start := findRec(recs, "exec requested", func(r map[string]any) bool { return r["argv0"] == "sh" && byUID(r) })
	if start == nil {
		t.Fatalf("no exec requested record for sh:\n%s", p.stderr.String())
	}
	if findRec(recs, "exec exited", func(r map[string]any) bool {
		return r["session"] == start["session"] && r["exit_code"] == float64(3)
	}) == nil {
		t.Fatalf("no exec exited record with session %v and exit code 3:\n%s", start["session"], p.stderr.String())
	}
	failed := findRec(recs, "exec requested", func(r map[string]any) bool { return r["argv0"] == "/no/such/command" })
	if failed == nil || findRec(recs, "exec failed", func(r map[string]any) bool {
		return r["session"] == failed["session"] && r["kind"] == "not_found"
	}) == nil {
		t.Fatalf("no exec failed record for the missing command:\n%s", p.stderr.String())
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// debugAddr returns the debug endpoint's address from the relay's log.
func (p *proc) debugAddr(t *testing.T) string {
	t.Helper()
	p.waitLog(t, "debug endpoint", 10*time.Second)
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, "debug endpoint") {
			if i := strings.Index(l, "addr="); i >= 0 {
				return strings.Fields(l[i+5:])[0]
			}
		}
	}
	t.Fatalf("no debug endpoint address:\n%s", p.stderr.String())
	return ""
}

// TestMetricsLintAndHealth: promlint finds nothing in the real binary's
// /metrics (with exec.log on, so its counters are there too); counters end
// in _total, durations are in seconds, every metric has a HELP line and
// relay_build_info is there. /healthz is 503 until the guest is ready, 200
// while serving and 503 once a core.shutdown has gone to the guest.
func TestMetricsLintAndHealth(t *testing.T) {
	g, path := newFakeGuest(t, 0)
	p := startRelay(t, "--guest", "unix:"+path, "--exec-log", privateDir(t), "--debug-addr", "127.0.0.1:0")
	addr := p.debugAddr(t)
	gc := p.guestConn(t, g)
	defer gc.Close()
	if code, body := httpGet(t, "http://"+addr+"/healthz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz before core.ready: %d %q", code, body)
	}
	gc.Write(enc(t, 0, frame.TypeReady, frame.Ready{}))
	c, _ := dialRelay(t, p.socket) // a handshake: the relay serves
	defer c.Close()
	if code, body := httpGet(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while serving: %d %q", code, body)
	}

	code, metrics := httpGet(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	problems, err := promlint.New(strings.NewReader(metrics)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
	}
	help := map[string]bool{}
	for _, l := range strings.Split(metrics, "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[0] == "#" && f[1] == "HELP" {
			help[f[2]] = true
		}
	}
	for _, l := range strings.Split(metrics, "\n") {
		if f := strings.Fields(l); len(f) > 3 && f[0] == "#" && f[1] == "TYPE" {
			if !help[f[2]] {
				t.Errorf("%s has no HELP line", f[2])
			}
			if f[3] == "counter" && !strings.HasSuffix(f[2], "_total") {
				t.Errorf("counter %s does not end in _total", f[2])
			}
		}
	}
	for _, want := range []string{"relay_to_guest_frames_total 0", "relay_id_collisions_total 0", "relay_ring_full_seconds_total 0",
		"relay_clients_active 1", "relay_exec_log_lines_total ", `relay_build_info{goversion="go`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(metrics, "nanos") || strings.Contains(metrics, "idcollisions") {
		t.Errorf("old names in /metrics:\n%s", metrics)
	}

	c.Write(enc(t, 0, frame.TypeShutdown, nil))
	readFrame(t, gc)
	p.waitLog(t, "core.shutdown forwarded", 5*time.Second)
	if code, body := httpGet(t, "http://"+addr+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Fatalf("/healthz after core.shutdown: %d %q", code, body)
	}
}
