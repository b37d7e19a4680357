package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
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

	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/internal/syncbuf"
)

// The tests build the real binary once and run it as a child process.
var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	cov := startCover()
	dir, err := os.MkdirTemp("", "relaybin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "relay")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, cov.buildArgs()...)
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build relay: %v\n%s", err, out)
		os.Exit(1)
	}
	code := cov.run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running relay binary.
type proc struct {
	cmd    *exec.Cmd
	socket string
	dir    string
	stderr *syncbuf.Buffer
	done   chan struct{}
	err    error
}

func privateDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func startRelay(t *testing.T, args ...string) *proc {
	t.Helper()
	dir := privateDir(t)
	p := &proc{socket: filepath.Join(dir, "agent.sock"), dir: dir, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"serve", "--socket", p.socket}, args...)...)
	p.cmd.Stderr = p.stderr
	p.cmd.Stdout = p.stderr
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

// stop ends the relay: SIGTERM, so that a coverage build writes its
// counters, and SIGKILL if it has not exited within 3 s.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitSocket waits until the relay accepts connections.
func (p *proc) waitSocket(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", p.socket); err == nil {
			c.Close()
			return
		}
		select {
		case <-p.done:
			t.Fatalf("relay exited early: %v\n%s", p.err, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay socket never came up\n%s", p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("relay still running after %v\n%s", timeout, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

func relayExec(t *testing.T, socket string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"exec", "--socket", socket}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// builtinRelay starts the binary on the builtin guest with exec.log on.
func builtinRelay(t *testing.T) (*proc, string) {
	logDir := privateDir(t)
	p := startRelay(t, "--guest", "builtin", "--exec-log", logDir)
	p.waitSocket(t)
	return p, logDir
}

func TestExecThroughBuiltin(t *testing.T) {
	p, logDir := builtinRelay(t)

	out, errOut, code := relayExec(t, p.socket, "", "--", "sh", "-c", "echo hello; sleep 0.2; echo oops >&2; exit 3")
	if out != "hello\n" || errOut != "oops\n" || code != 3 {
		t.Fatalf("exec: stdout %q stderr %q code %d", out, errOut, code)
	}
	out, _, code = relayExec(t, p.socket, "line one\nline two\n", "--", "cat")
	if out != "line one\nline two\n" || code != 0 {
		t.Fatalf("stdin forwarding: %q code %d", out, code)
	}
	out, _, _ = relayExec(t, p.socket, "", "-e", "GREETING=hi there", "-w", "/tmp", "--", "sh", "-c", "echo $GREETING; pwd")
	if out != "hi there\n/tmp\n" {
		t.Fatalf("env and cwd: %q", out)
	}
	_, errOut, code = relayExec(t, p.socket, "", "--", "/no/such/command")
	if code == 0 || !strings.Contains(errOut, "not_found") {
		t.Fatalf("missing command: code %d stderr %q", code, errOut)
	}
	out, _, code = relayExec(t, p.socket, "", "-t", "--", "sh", "-c", "tty; echo to-stderr >&2")
	if code != 0 || !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "to-stderr") {
		t.Fatalf("tty: %q code %d", out, code)
	}

	// SIGTERM: clean exit, socket removed, exec.log flushed.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d\n%s", code, p.stderr.String())
	}
	if _, err := os.Stat(p.socket); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	lines := readLog(t, filepath.Join(logDir, "exec.log"))
	want := []string{
		`system|--- sandbox started ---` + "\n" + `|0`,
		"stdout|hello\n|1",
		"stderr|oops\n|1",
		"stdout|line one\nline two\n|2",
	}
	for i, w := range want {
		if i >= len(lines) || lines[i] != w {
			t.Fatalf("exec.log line %d = %q, want %q (all: %q)", i, at(lines, i), w, lines)
		}
	}
}

func at(l []string, i int) string {
	if i < len(l) {
		return l[i]
	}
	return ""
}

// readLog returns exec.log lines as "s|d|id", merging chunks of one session
// and stream that the guest may have split.
func readLog(t *testing.T, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	var last struct {
		S, D string
		ID   uint64
	}
	flush := func() {
		if last.S != "" {
			out = append(out, fmt.Sprintf("%s|%s|%d", last.S, last.D, last.ID))
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			T, S, D string
			ID      uint64
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("bad exec.log line %q", sc.Text())
		}
		if l.S == last.S && l.ID == last.ID && l.S != "system" {
			last.D += l.D
			continue
		}
		flush()
		last.S, last.D, last.ID = l.S, l.D, l.ID
	}
	flush()
	return out
}

// fakeGuest accepts one console connection on a Unix socket and plays the
// guest: for vsock it first answers the hybrid-vsock handshake.
type fakeGuest struct {
	ln   *net.UnixListener
	conn chan net.Conn
}

func newFakeGuest(t *testing.T, vsockPort uint32) (*fakeGuest, string) {
	path := filepath.Join(privateDir(t), "console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	g := &fakeGuest{ln: ln, conn: make(chan net.Conn, 1)}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if vsockPort != 0 {
			line, _ := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
			if line != fmt.Sprintf("CONNECT %d\n", vsockPort) {
				c.Close()
				return
			}
			io.WriteString(c, "OK 1073741824\n")
		}
		g.conn <- c
	}()
	return g, path
}

func readFrame(t *testing.T, r io.Reader) []byte {
	t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	b := make([]byte, 4+binary.BigEndian.Uint32(hdr[:]))
	copy(b, hdr[:])
	if _, err := io.ReadFull(r, b[4:]); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return b
}

func enc(t *testing.T, id uint32, typ frame.Type, p any) []byte {
	b, err := frame.AppendMessage(nil, id, typ, p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testTransport plays the guest over a real socket: ready, frames both ways,
// a SIGKILL for a departed client's session, then the guest hangs up and the
// relay exits 0 having removed its socket.
func testTransport(t *testing.T, spec string, g *fakeGuest) {
	p := startRelay(t, "--guest", spec, "--ready-timeout", "10")
	var gc net.Conn
	select {
	case gc = <-g.conn:
	case <-time.After(10 * time.Second):
		t.Fatalf("relay never connected to the guest\n%s", p.stderr.String())
	}
	defer gc.Close()
	// Frames before ready are discarded; ready is cached for handshakes.
	gc.Write(enc(t, 5, frame.TypeExecStdout, frame.ExecStdout{Data: []byte("early")}))
	ready := enc(t, 0, frame.TypeReady, frame.Ready{BootTimeNs: 1, InitTimeNs: 2, ReadyTimeNs: 3})
	gc.Write(ready)
	p.waitSocket(t)
	c, err := net.Dial("unix", p.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var off [4]byte
	io.ReadFull(c, off[:])
	if hs := readFrame(t, c); !bytes.Equal(hs, ready) {
		t.Fatalf("handshake ready %x, want %x", hs, ready)
	}
	start := binary.BigEndian.Uint32(off[:])
	req := enc(t, start+1, frame.TypeExecRequest, frame.ExecRequest{Cmd: "sleep", Args: []string{"100"}, Env: []string{}, Rows: 24, Cols: 80, Rlimits: []frame.Rlimit{}})
	c.Write(req)
	if got := readFrame(t, gc); !bytes.Equal(got, req) {
		t.Fatalf("guest got %x, want %x", got, req)
	}
	out := enc(t, start+1, frame.TypeExecStdout, frame.ExecStdout{Data: []byte("zzz")})
	gc.Write(out)
	if got := readFrame(t, c); !bytes.Equal(got, out) {
		t.Fatalf("client got %x, want %x", got, out)
	}
	c.Close()
	if got, want := readFrame(t, gc), enc(t, start+1, frame.TypeExecSignal, frame.ExecSignal{Signal: 9}); !bytes.Equal(got, want) {
		t.Fatalf("after disconnect guest got %x, want SIGKILL %x", got, want)
	}
	gc.Close()
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("relay exit code %d after the guest hung up\n%s", code, p.stderr.String())
	}
	if _, err := os.Stat(p.socket); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

func TestUnixTransport(t *testing.T) {
	g, path := newFakeGuest(t, 0)
	testTransport(t, "unix:"+path, g)
}

func TestVsockTransport(t *testing.T) {
	g, path := newFakeGuest(t, 1024)
	testTransport(t, "vsock:"+path+":1024", g)
}

func TestReadyTimeout(t *testing.T) {
	g, path := newFakeGuest(t, 0)
	p := startRelay(t, "--guest", "unix:"+path, "--ready-timeout", "1500ms")
	// Connected, never says ready. The connection is held: a collected
	// net.Conn closes its socket, and the relay would see the guest end
	// instead of the timeout.
	gc := <-g.conn
	defer gc.Close()
	start := time.Now()
	if code := p.wait(t, 10*time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if d := time.Since(start); d < time.Second || d > 6*time.Second {
		t.Fatalf("gave up after %v, want about 1.5s", d)
	}
	// A start-up failure is a plain message, not a log record.
	if !strings.Contains(p.stderr.String(), "\nrelay serve: relay: timed out") || !strings.Contains(p.stderr.String(), "core.ready") ||
		strings.Contains(p.stderr.String(), "level=ERROR") {
		t.Fatalf("want a plain message naming core.ready:\n%s", p.stderr.String())
	}
	if _, err := os.Stat(p.socket); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
}

func TestSocketModeAndDebugEndpoint(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	p := startRelay(t, "--guest", "echo", "--debug-addr", "127.0.0.1:0")
	p.waitSocket(t)
	fi, err := os.Stat(p.socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600", fi.Mode(), err)
	}
	var addr string
	deadline := time.Now().Add(5 * time.Second)
	for addr == "" && time.Now().Before(deadline) {
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			if strings.Contains(l, "debug endpoint") {
				if i := strings.Index(l, "addr="); i >= 0 {
					addr = strings.Fields(l[i+5:])[0]
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if addr == "" {
		t.Fatalf("no debug endpoint logged:\n%s", p.stderr.String())
	}
	// Move one frame so the counters are not all zero (waitSocket was the
	// first client, this is the second).
	c, err := net.Dial("unix", p.socket)
	if err != nil {
		t.Fatal(err)
	}
	var off [4]byte
	io.ReadFull(c, off[:])
	readFrame(t, c)
	f := enc(t, binary.BigEndian.Uint32(off[:])+1, frame.TypeExecStdin, frame.ExecStdin{Data: []byte("ping")})
	c.Write(f)
	if got := readFrame(t, c); !bytes.Equal(got, f) {
		t.Fatalf("echo guest returned %x", got)
	}
	c.Close()
	// Frame counters are published at the end of the loop's pass, which
	// may come just after the echo reached this client: poll briefly.
	wants := []string{"relay_to_guest_frames_total 1", "relay_to_client_frames_total 1", "relay_clients_accepted_total 2", "go_goroutines"}
	var body []byte
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		missing := ""
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				missing = want
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q:\n%s", missing, body)
		}
	}
	out, err := exec.Command(bin, "stats", "--debug-addr", addr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "FramesToGuest") {
		t.Fatalf("relay stats: %v\n%s", err, out)
	}
}
