//go:build linux

package vmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/client"
	"github.com/agentrelay/agentrelay/frame"
	"github.com/agentrelay/agentrelay/internal/syncbuf"
)

func TestBoot(t *testing.T) {
	c := dial(t)
	if got := sh(t, c, "uname -sr; cat /proc/1/comm"); !strings.HasPrefix(got, "Linux 6.") || !strings.Contains(got, "init") {
		t.Fatalf("not the VM's kernel and init: %q", got)
	}
	if got := sh(t, c, "cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' '"); got != "virtio virtio_console virtio_mmio virtio_pci virtio_pci_legacy_dev virtio_pci_modern_dev virtio_ring " {
		t.Fatalf("modules loaded: %q", got)
	}
	if got := sh(t, c, "mount | cut -d' ' -f3,5 | sort | tr '\\n' ,"); got != "/ rootfs,/dev devtmpfs,/dev/pts devpts,/dev/shm tmpfs,/proc proc,/run tmpfs,/sys sysfs,/tmp tmpfs," {
		t.Fatalf("mounts: %q", got)
	}
	r := c.Ready()
	if r.BootTimeNs == 0 || r.ReadyTimeNs < r.BootTimeNs {
		t.Fatalf("core.ready timings %+v", r)
	}
	t.Logf("guest ready %v after QEMU started (%s); kernel to agentd %v, agentd to ready %v",
		bootTime.Round(time.Millisecond), vm.Accel, time.Duration(r.BootTimeNs).Round(time.Millisecond), time.Duration(r.InitTimeNs).Round(time.Millisecond))
}

func TestExitCodesAndOutput(t *testing.T) {
	c := dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code, err := c.Exec(ctx, client.ExecOptions{Cmd: "sh", Args: []string{"-c", "echo out; echo err >&2; exit 3"}, Stdout: &out, Stderr: &errb})
	if err != nil || code != 3 || out.String() != "out\n" || errb.String() != "err\n" {
		t.Fatalf("code %d err %v stdout %q stderr %q", code, err, out.String(), errb.String())
	}
	code, err = c.Exec(ctx, client.ExecOptions{Cmd: "sh", Args: []string{"-c", "kill -9 $$"}})
	if err != nil || code != 128+9 {
		t.Fatalf("killed by SIGKILL: code %d err %v", code, err)
	}
	_, err = c.Exec(ctx, client.ExecOptions{Cmd: "no-such-command"})
	var fe *client.ExecFailedError
	if !errors.As(err, &fe) || fe.Kind != frame.FailNotFound || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("missing command: %v", err)
	}
	_, err = c.Exec(ctx, client.ExecOptions{Cmd: "true", Cwd: "/nonexistent"})
	if !errors.As(err, &fe) || fe.Kind != frame.FailBadCwd {
		t.Fatalf("bad cwd: %v", err)
	}
	out.Reset()
	code, err = c.Exec(ctx, client.ExecOptions{Cmd: "sh", Args: []string{"-c", "echo $FOO; pwd; id -u; ulimit -n"},
		Env: []string{"FOO=bar"}, Cwd: "/tmp", User: "nobody", Rlimits: []frame.Rlimit{{Resource: "nofile", Soft: 77, Hard: 77}}, Stdout: &out})
	if err != nil || code != 0 || out.String() != "bar\n/tmp\n65534\n77\n" {
		t.Fatalf("env, cwd, user, rlimit: code %d err %v stdout %q", code, err, out.String())
	}
}

// TestLargeStreams sends multi-MB stdin through cat and back, and checks
// both directions with checksums: the guest's sha256sum of what it read,
// and ours of what came back.
func TestLargeStreams(t *testing.T) {
	c := dial(t)
	data := make([]byte, 6<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	start := time.Now()
	code, err := c.Exec(ctx, client.ExecOptions{Cmd: "sh", Args: []string{"-c", "tee /tmp/big | cat; sha256sum /tmp/big >&2; rm /tmp/big"},
		Stdin: bytes.NewReader(data), Stdout: &out, Stderr: &errb})
	if err != nil || code != 0 {
		t.Fatalf("code %d err %v stderr %q", code, err, errb.String())
	}
	if got := sha256.Sum256(out.Bytes()); got != sum {
		t.Fatalf("stdout: %d bytes, sha256 %x, want %d bytes %s", out.Len(), got, len(data), want)
	}
	if !strings.HasPrefix(errb.String(), want) {
		t.Fatalf("the guest read something else: %q, want %s", errb.String(), want)
	}
	t.Logf("%d MiB each way in %v", len(data)>>20, time.Since(start).Round(time.Millisecond))
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTTYResize(t *testing.T) {
	c := dial(t)
	out := &syncbuf.Buffer{}
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	ids := make(chan uint32, 1)
	done := make(chan error, 1)
	var code int
	go func() {
		var err error
		code, err = c.Exec(context.Background(), client.ExecOptions{
			Cmd: "sh", Args: []string{"-c", "stty size; [ -t 0 ] && echo tty; read x; stty size"},
			TTY: true, Rows: 24, Cols: 80, Stdin: stdin, Stdout: out,
			Started: func(id, _ uint32) { ids <- id },
		})
		done <- err
	}()
	id := <-ids
	waitFor(t, "the first stty size", func() bool { return strings.Contains(out.String(), "tty") })
	if !strings.Contains(out.String(), "24 80") {
		t.Fatalf("initial size: %q", out.String())
	}
	if err := c.Resize(id, 40, 132); err != nil {
		t.Fatal(err)
	}
	io.WriteString(stdinW, "go\n")
	if err := <-done; err != nil || code != 0 {
		t.Fatalf("code %d err %v output %q", code, err, out.String())
	}
	if !strings.Contains(out.String(), "40 132") {
		t.Fatalf("size after resize: %q", out.String())
	}
}

func TestSignals(t *testing.T) {
	c := dial(t)
	for _, tc := range []struct {
		name   string
		script string
		sig    int
		code   int
		output string
	}{
		{"trapped TERM", `trap 'echo got TERM; exit 5' TERM; echo ready; while :; do sleep 0.05; done`, 15, 5, "got TERM"},
		{"default INT", `echo ready; exec sleep 1000`, 2, 128 + 2, ""},
		{"KILL reaches the group", `sleep 1001 & echo ready; wait`, 9, 128 + 9, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &syncbuf.Buffer{}
			ids := make(chan uint32, 1)
			done := make(chan error, 1)
			var code int
			go func() {
				var err error
				code, err = c.Exec(context.Background(), client.ExecOptions{Cmd: "sh", Args: []string{"-c", tc.script}, Stdout: out,
					Started: func(id, _ uint32) { ids <- id }})
				done <- err
			}()
			id := <-ids
			waitFor(t, "ready", func() bool { return strings.Contains(out.String(), "ready") })
			if err := c.Signal(id, tc.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil || code != tc.code || !strings.Contains(out.String(), tc.output) {
					t.Fatalf("code %d (want %d) err %v output %q", code, tc.code, err, out.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the signal did not end the command")
			}
		})
	}
	if ps := sh(t, c, "ps -o args | grep '[s]leep 1001' || true"); ps != "" {
		t.Fatalf("the background child outlived SIGKILL to its group: %q", ps)
	}
}

// TestConcurrentClients: 16 clients at once, each in its own slot, each
// sending its own data through the guest and checking what comes back.
func TestConcurrentClients(t *testing.T) {
	needVM(t)
	var wg sync.WaitGroup
	errs := make(chan error, frame.MaxClients)
	for i := 0; i < frame.MaxClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, relay.socket)
			if err != nil {
				errs <- fmt.Errorf("client %d: dial: %w", i, err)
				return
			}
			defer c.Close()
			data := make([]byte, 128<<10)
			rand.Read(data)
			for round := 0; round < 3; round++ {
				var out bytes.Buffer
				code, err := run(ctx, c, func() client.ExecOptions {
					out.Reset()
					return client.ExecOptions{Cmd: "cat", Stdin: bytes.NewReader(data), Stdout: &out}
				})
				if err != nil || code != 0 || !bytes.Equal(out.Bytes(), data) {
					errs <- fmt.Errorf("client %d round %d: code %d err %v, %d bytes back of %d", i, round, code, err, out.Len(), len(data))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestDisconnectKillsGuestProcesses: a client that goes away mid-command
// has its processes, background ones included, killed inside the guest.
func TestDisconnectKillsGuestProcesses(t *testing.T) {
	a := dial(t)
	started := make(chan struct{})
	go a.Exec(context.Background(), client.ExecOptions{Cmd: "sh", Args: []string{"-c", "sleep 4242 & sleep 4243"},
		Started: func(uint32, uint32) { close(started) }})
	<-started
	b := dial(t)
	ps := func() string { return sh(t, b, "ps -o args | grep '[s]leep 424' || true") }
	waitFor(t, "both sleeps running in the guest", func() bool { return strings.Count(ps(), "sleep 424") == 2 })
	a.Close()
	waitFor(t, "the departed client's processes to die in the guest", func() bool { return ps() == "" })
}

// TestExecLog: the relay's exec.log beside its socket captures a
// command's output and the sandbox's start.
func TestExecLog(t *testing.T) {
	c := dial(t)
	marker := fmt.Sprintf("exec-log-marker-%d", time.Now().UnixNano())
	sh(t, c, "echo "+marker+"; echo "+marker+"-err >&2")
	type line struct {
		T, S, D string
		ID      uint64 `json:"id"`
	}
	// Earlier tests' megabytes may have rotated the sandbox's start line
	// into exec.log.N: read them all, oldest first.
	var lines []line
	waitFor(t, "the output in exec.log", func() bool {
		lines = lines[:0]
		var all []byte
		for _, name := range []string{"exec.log.3", "exec.log.2", "exec.log.1", "exec.log"} {
			b, _ := os.ReadFile(filepath.Join(dir, name))
			all = append(all, b...)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(all)), "\n") {
			var x line
			if json.Unmarshal([]byte(l), &x) != nil {
				t.Fatalf("not a JSON line: %q", l)
			}
			lines = append(lines, x)
		}
		return strings.Contains(string(all), marker+"-err")
	})
	var stdout, stderr, started bool
	for _, l := range lines {
		switch {
		case l.S == "system" && strings.Contains(l.D, "sandbox started"):
			started = true
		case l.S == "stdout" && l.D == marker+"\n" && l.ID != 0:
			stdout = true
		case l.S == "stderr" && l.D == marker+"-err\n" && l.ID != 0:
			stderr = true
		}
	}
	if !started || !stdout || !stderr {
		t.Fatalf("exec.log lacks the start (%v), stdout (%v) or stderr (%v) line (%d lines)", started, stdout, stderr, len(lines))
	}
}
