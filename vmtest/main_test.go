//go:build linux

package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/client"
	"github.com/agentrelay/agentrelay/internal/syncbuf"
)

// One VM and one relay in front of it serve the whole package.
var (
	skipReason string
	relayBin   string
	image      string
	dir        string // private: console socket, relay socket, exec.log, logs
	vm         *VM
	relay      *relayProc
	bootTime   time.Duration
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Getenv("RELAY_VM_TESTS") != "1" {
		skipReason = "VM tests run only with RELAY_VM_TESTS=1 (make vm-test), after the race suite"
		return m.Run()
	}
	image = os.Getenv("RELAY_VM_IMAGE")
	if image == "" {
		image = "../out/vm"
	}
	image, _ = filepath.Abs(image)
	if err := Available(image); err != nil {
		skipReason = "no VM: " + err.Error()
		fmt.Fprintln(os.Stderr, "vmtest: skipping:", skipReason)
		return m.Run()
	}
	var err error
	if dir, err = os.MkdirTemp("", "vmtest"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	relayBin = filepath.Join(dir, "relay")
	if out, err := exec.Command("go", "build", "-o", relayBin, "../cmd/relay").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build relay: %v\n%s", err, out)
		return 1
	}
	start := time.Now()
	if vm, err = Start(Options{Image: image, Dir: dir}); err != nil {
		fmt.Fprintln(os.Stderr, "boot:", err)
		return 1
	}
	defer func() {
		select {
		case <-vm.Done():
		default:
			vm.Kill()
		}
	}()
	if relay, err = startRelay(filepath.Join(dir, "agent.sock")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		serial, _ := os.ReadFile(vm.Serial)
		fmt.Fprintf(os.Stderr, "serial log:\n%s\n", serial)
		return 1
	}
	defer func() { // TestLifecycle and the benchmarks replace relay
		if relay != nil {
			relay.stop()
		}
	}()
	bootTime = time.Since(start)
	fmt.Fprintf(os.Stderr, "vmtest: guest ready %v after QEMU started (%s)\n", bootTime.Round(time.Millisecond), vm.Accel)
	code := m.Run()
	if code != 0 {
		serial, _ := os.ReadFile(vm.Serial)
		fmt.Fprintf(os.Stderr, "serial log:\n%s\nrelay log:\n%s\n", serial, relay.stderr.String())
	}
	return code
}

func needVM(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

// relayProc is a running relay binary serving the VM's console.
type relayProc struct {
	cmd    *exec.Cmd
	socket string
	stderr *syncbuf.Buffer
	done   chan struct{}
	err    error
}

// startRelay starts the relay on the VM's console and waits for the
// guest's core.ready.
func startRelay(socket string) (*relayProc, error) {
	p := &relayProc{socket: socket, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(relayBin, "serve", "--socket", socket, "--guest", "unix:"+vm.Console, "--exec-log", dir)
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.stderr.String(), "guest ready") {
		select {
		case <-p.done:
			return nil, fmt.Errorf("relay exited before the guest was ready: %v\n%s", p.err, p.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("no core.ready from the guest in 60 s\n%s", p.stderr.String())
		}
	}
	return p, nil
}

// stop ends the relay with SIGTERM, as an operator would, and waits.
func (p *relayProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// dial connects a client to the relay in front of the VM.
func dial(t testing.TB) *client.Conn {
	t.Helper()
	needVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, relay.socket)
	if err != nil {
		t.Fatalf("dial relay: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sh runs script in the guest's shell and returns its stdout, failing the
// test unless it exits 0.
func sh(t testing.TB, c *client.Conn, script string) string {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code, err := run(ctx, c, func() client.ExecOptions {
		out.Reset()
		errb.Reset()
		return client.ExecOptions{Cmd: "sh", Args: []string{"-c", script}, Stdout: &out, Stderr: &errb}
	})
	if err != nil || code != 0 {
		t.Fatalf("sh -c %q: code %d, err %v, stderr %q", script, code, err, errb.String())
	}
	return out.String()
}

// run is c.Exec, retried while the relay refuses the session's id because
// a departed client's session with that id is still ending in the guest
// (the SDK numbers each connection's sessions from its slot's first id;
// the relay asks for a retry with another, and the next call takes the
// next id). opts is called per attempt, for a fresh stdin.
func run(ctx context.Context, c *client.Conn, opts func() client.ExecOptions) (int, error) {
	for attempt := 0; ; attempt++ {
		code, err := c.Exec(ctx, opts())
		var fe *client.ExecFailedError
		if attempt < 50 && errors.As(err, &fe) && strings.Contains(fe.Message, "still in use") {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		return code, err
	}
}

// hangUps counts agentd's reports of a host connection's end.
func hangUps() int {
	b, _ := os.ReadFile(vm.Serial)
	return strings.Count(string(b), "host disconnected")
}

// awaitHangUp waits until agentd has seen more than n host connections
// end. A host that reconnects before the guest has seen it hang up goes
// unnoticed: virtio-serial reports only whether a host is connected, and
// a close and an open that reach the guest together leave it looking
// connected throughout, so agentd sends no new core.ready. Whoever
// reconnects at once waits for this first.
func awaitHangUp(n int) error {
	deadline := time.Now().Add(20 * time.Second)
	for hangUps() <= n {
		if time.Now().After(deadline) {
			return errors.New("agentd did not report the host's hang-up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
