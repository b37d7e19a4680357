//go:build linux

package vmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/internal/syncbuf"
)

// TestRunVMScript runs scripts/run-vm.sh (make run-vm) as a user would, in
// a directory of its own beside the package's VM: it boots, says so, serves
// `relay exec`, and SIGTERM leaves nothing running.
func TestRunVMScript(t *testing.T) {
	needVM(t)
	d, err := os.MkdirTemp("", "runvm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(d)
	out := &syncbuf.Buffer{}
	cmd := exec.Command("bash", "../scripts/run-vm.sh")
	cmd.Env = append(os.Environ(), "DIR="+d, "IMG="+image, "RELAY="+relayBin)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("run-vm.sh output:\n%s", out.String())
		}
	}()
	waitFor(t, "run-vm.sh to report the boot", func() bool {
		select {
		case err := <-done:
			t.Fatalf("run-vm.sh exited: %v\n%s", err, out.String())
		default:
		}
		return strings.Contains(out.String(), "run-vm: guest ready")
	})
	got, err := exec.Command(relayBin, "exec", "--socket", filepath.Join(d, "agent.sock"), "--", "uname", "-n").CombinedOutput()
	if err != nil || string(got) != "agentvm\n" {
		t.Fatalf("relay exec: %v: %q", err, got)
	}
	b, err := os.ReadFile(filepath.Join(d, "qemu.pid"))
	if err != nil {
		t.Fatal(err)
	}
	qemu, _ := strconv.Atoi(strings.TrimSpace(string(b)))

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run-vm.sh after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run-vm.sh did not stop on SIGTERM")
	}
	if syscall.Kill(qemu, 0) == nil {
		t.Fatalf("QEMU (pid %d) still running", qemu)
	}
	for _, f := range []string{"agent.sock", "console.sock"} {
		if _, err := os.Stat(filepath.Join(d, f)); !os.IsNotExist(err) {
			t.Fatalf("%s left behind: %v", f, err)
		}
	}
}
