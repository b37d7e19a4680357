package kcount

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func attach(t *testing.T, pid int) *Counter {
	t.Helper()
	c, err := Attach(pid)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no BPF here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func read(t *testing.T, c *Counter) Counts {
	t.Helper()
	n, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A child that only sleeps, to count for while this process is busy.
func sleeper(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep(1): %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

const calls = 5000

func getpids() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range calls {
		unix.Getpid()
	}
}

func TestCountsOwnSyscalls(t *testing.T) {
	c := attach(t, os.Getpid())
	before := read(t, c)
	getpids()
	d := read(t, c).Sub(before)
	if d.Syscalls < calls {
		t.Fatalf("counted %d syscalls, made at least %d", d.Syscalls, calls)
	}
	// The rest of the process (runtime, test framework) is quiet: a count
	// far above what was made means the filter is not filtering.
	if d.Syscalls > 4*calls {
		t.Fatalf("counted %d syscalls for %d getpid calls", d.Syscalls, calls)
	}
}

func TestFiltersOtherProcesses(t *testing.T) {
	c := attach(t, sleeper(t))
	before := read(t, c)
	getpids()
	if d := read(t, c).Sub(before); d.Syscalls >= calls/10 {
		t.Fatalf("a sleeping process made %d syscalls while this one made %d", d.Syscalls, calls)
	}
}

func TestCountsSwitches(t *testing.T) {
	c := attach(t, os.Getpid())
	const sleeps = 200
	before := read(t, c)
	func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		ts := unix.Timespec{Nsec: 10_000}
		for range sleeps {
			// Every sleep blocks the thread: one switch away each.
			unix.Nanosleep(&ts, nil)
		}
	}()
	d := read(t, c).Sub(before)
	if d.Switches < sleeps {
		t.Fatalf("counted %d context switches for %d sleeps", d.Switches, sleeps)
	}
	if d.Syscalls < sleeps {
		t.Fatalf("counted %d syscalls for %d nanosleeps", d.Syscalls, sleeps)
	}
}

func TestSub(t *testing.T) {
	got := Counts{Syscalls: 10, Switches: 7}.Sub(Counts{Syscalls: 4, Switches: 2})
	if got != (Counts{Syscalls: 6, Switches: 5}) {
		t.Fatalf("Sub = %+v", got)
	}
}
