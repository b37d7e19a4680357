//go:build linux

package vmtest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentrelay/agentrelay/client"
)

// TestLifecycle runs last (file order): it powers the package's VM off,
// then boots one more to kill it.
func TestLifecycle(t *testing.T) {
	needVM(t)
	t.Run("relay restart re-attaches", func(t *testing.T) {
		c := dial(t)
		before := c.Ready()
		started := make(chan struct{})
		go c.Exec(context.Background(), client.ExecOptions{Cmd: "sleep", Args: []string{"4545"},
			Started: func(uint32, uint32) { close(started) }})
		<-started

		// A crash, not a clean stop: the relay gets no chance to tell
		// anyone, and leaves its socket behind.
		n := hangUps()
		relay.cmd.Process.Kill()
		<-relay.done
		if err := awaitHangUp(n); err != nil {
			t.Fatal(err)
		}
		var err error
		if relay, err = startRelay(relay.socket); err != nil {
			t.Fatal(err)
		}
		c2 := dial(t)
		after := c2.Ready()
		if after.BootTimeNs != before.BootTimeNs {
			t.Fatalf("core.ready after the restart: %+v, before: %+v: the VM rebooted?", after, before)
		}
		if !strings.Contains(relay.stderr.String(), "guest ready") {
			t.Fatal("the new relay logged no core.ready from the guest")
		}
		// The old connection's session was killed inside the guest.
		waitFor(t, "sleep 4545 to die with the old host connection", func() bool {
			return sh(t, c2, "ps -o args | grep '[s]leep 4545' || true") == ""
		})
		serial, _ := os.ReadFile(vm.Serial)
		if !strings.Contains(string(serial), "host disconnected: its sessions were killed") {
			t.Fatalf("agentd did not report the hang-up:\n%s", serial)
		}
	})
	t.Run("core.shutdown powers off", func(t *testing.T) {
		c := dial(t)
		if err := c.Shutdown(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-vm.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("the VM did not power off")
		}
		if vm.err != nil {
			t.Fatalf("QEMU: %v", vm.err)
		}
		serial, _ := os.ReadFile(vm.Serial)
		if !strings.Contains(string(serial), "core.shutdown: powering off") || !strings.Contains(string(serial), "Power down") {
			t.Fatalf("no orderly power-off in the serial log:\n%s", serial)
		}
		select {
		case <-relay.done:
		case <-time.After(20 * time.Second):
			t.Fatal("the relay outlived the VM")
		}
	})
	// The package's one VM is gone: the last step boots another.
	t.Run("QEMU killed", func(t *testing.T) {
		var err error
		if vm, err = Start(Options{Image: image, Dir: dir}); err != nil {
			t.Fatal(err)
		}
		if relay, err = startRelay(relay.socket); err != nil {
			t.Fatal(err)
		}
		vm.Kill()
		select {
		case <-relay.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("the relay outlived QEMU:\n%s", relay.stderr.String())
		}
		if relay.err != nil {
			t.Fatalf("relay exit: %v\n%s", relay.err, relay.stderr.String())
		}
		if !strings.Contains(relay.stderr.String(), "guest stream ended") {
			t.Fatalf("the relay did not say why it exited:\n%s", relay.stderr.String())
		}
		if _, err := os.Stat(relay.socket); !os.IsNotExist(err) {
			t.Fatalf("socket left behind: %v", err)
		}
	})
}
