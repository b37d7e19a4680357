//go:build linux

package vmtest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options describe a VM to boot.
type Options struct {
	Image string // directory with vmlinux and initramfs.cpio
	Dir   string // where the console socket and logs go
	Accel string // tcg or kvm; empty means Accel()
	Mem   string // default 512M
}

// A VM is a running QEMU.
type VM struct {
	Console string // QEMU's chardev socket: the guest's virtio-serial port
	Serial  string // the kernel's and agentd's log
	Accel   string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// QEMU is the emulator's binary name.
const QEMU = "qemu-system-x86_64"

// Accel picks KVM only where it can run a stock kernel: the CPU has VMX or
// SVM and kvm_intel or kvm_amd is loaded. A /dev/kvm alone is not enough:
// a PVM one runs only PVM-patched guests. QEMU_ACCEL overrides.
func Accel() string {
	if a := os.Getenv("QEMU_ACCEL"); a != "" {
		return a
	}
	cpu, _ := os.ReadFile("/proc/cpuinfo")
	mods, _ := os.ReadFile("/proc/modules")
	if regexp.MustCompile(`\b(vmx|svm)\b`).Match(cpu) &&
		regexp.MustCompile(`(?m)^kvm_(intel|amd) `).Match(mods) {
		return "kvm"
	}
	return "tcg"
}

// hostKHz is the TSC rate the guest is told: under TCG the microvm guest
// hangs after "Marking TSC unstable" unless it gets tsc_early_khz and
// tsc=reliable.
func hostKHz() (int, error) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "cpu MHz" {
			mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("cpu MHz %q: %w", v, err)
			}
			return int(mhz * 1000), nil
		}
	}
	return 0, errors.New("no cpu MHz in /proc/cpuinfo")
}

// Args is QEMU's command line for o (scripts/run-vm.sh builds the same).
func Args(o Options, khz int) []string {
	mem := o.Mem
	if mem == "" {
		mem = "512M"
	}
	return []string{
		"-machine", "microvm,acpi=on", "-accel", o.Accel, "-cpu", "max", "-m", mem, "-smp", "1",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-kernel", filepath.Join(o.Image, "vmlinux"), "-initrd", filepath.Join(o.Image, "initramfs.cpio"),
		"-append", fmt.Sprintf("console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz=%d tsc=reliable", khz),
		"-serial", "file:" + filepath.Join(o.Dir, "serial.log"),
		"-device", "virtio-serial-device",
		"-chardev", "socket,id=agent,path=" + filepath.Join(o.Dir, "console.sock") + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=agent",
	}
}

// Available says why a VM cannot be booted here, or nil.
func Available(image string) error {
	if _, err := exec.LookPath(QEMU); err != nil {
		return fmt.Errorf("%s not installed (apt-get install --no-install-recommends qemu-system-x86)", QEMU)
	}
	for _, f := range []string{"vmlinux", "initramfs.cpio"} {
		if _, err := os.Stat(filepath.Join(image, f)); err != nil {
			return fmt.Errorf("no VM image in %s (make vm-image): %w", image, err)
		}
	}
	return nil
}

// Start boots a VM; it returns once QEMU's console socket exists. The
// guest is still booting then: its core.ready comes to whoever connects.
func Start(o Options) (*VM, error) {
	if o.Accel == "" {
		o.Accel = Accel()
	}
	khz, err := hostKHz()
	if err != nil {
		return nil, err
	}
	v := &VM{
		Console: filepath.Join(o.Dir, "console.sock"),
		Serial:  filepath.Join(o.Dir, "serial.log"),
		Accel:   o.Accel,
		done:    make(chan struct{}),
	}
	log, err := os.Create(filepath.Join(o.Dir, "qemu.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	v.cmd = exec.Command(QEMU, Args(o, khz)...)
	v.cmd.Stdout, v.cmd.Stderr = log, log
	// Its own process group: a terminal's ^C is for the test binary.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := v.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", QEMU, err)
	}
	go func() {
		v.err = v.cmd.Wait()
		close(v.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(v.Console); err == nil {
			return v, nil
		}
		select {
		case <-v.done:
			b, _ := os.ReadFile(filepath.Join(o.Dir, "qemu.log"))
			return nil, fmt.Errorf("%s exited: %v: %s", QEMU, v.err, b)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			v.Kill()
			return nil, fmt.Errorf("%s made no console socket in 10 s", QEMU)
		}
	}
}

// Pid is QEMU's pid.
func (v *VM) Pid() int { return v.cmd.Process.Pid }

// Done is closed once QEMU has exited.
func (v *VM) Done() <-chan struct{} { return v.done }

// Kill ends QEMU at once and waits for it.
func (v *VM) Kill() {
	v.cmd.Process.Kill()
	<-v.done
}
