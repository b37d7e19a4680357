package kcount

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// ErrUnavailable wraps every reason the kernel cannot count for us: not
// root, no BPF, no tracefs.
var ErrUnavailable = errors.New("kcount: BPF tracepoints unavailable")

// Counts are a process's events since its Counter was attached.
type Counts struct {
	Syscalls uint64 // raw_syscalls:sys_enter of any of its threads
	Switches uint64 // sched:sched_switch away from any of its threads
}

// Sub returns c - o, for a before/after pair.
func (c Counts) Sub(o Counts) Counts {
	return Counts{Syscalls: c.Syscalls - o.Syscalls, Switches: c.Switches - o.Switches}
}

// Indexes into the per-CPU counter array.
const (
	slotSyscalls = iota
	slotSwitches
	numSlots
)

// Counter counts the events of one process (thread group) from Attach until
// Close.
type Counter struct {
	pid    int
	counts *ebpf.Map
	progs  []*ebpf.Program
	links  []link.Link
	cpus   int
}

// Attach starts counting the system calls and context switches of process
// pid, all its threads included.
func Attach(pid int) (*Counter, error) {
	if err := ensureTracefs(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("kcount: %w", err)
	}
	counts, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "kcount",
		Type:       ebpf.PerCPUArray,
		KeySize:    4,
		ValueSize:  8,
		MaxEntries: numSlots,
	})
	if err != nil {
		return nil, unavailable("map", err)
	}
	c := &Counter{pid: pid, counts: counts, cpus: cpus}
	for _, tp := range []struct {
		group, name string
		slot        int32
	}{
		{"raw_syscalls", "sys_enter", slotSyscalls},
		{"sched", "sched_switch", slotSwitches},
	} {
		if err := c.attach(tp.group, tp.name, tp.slot); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *Counter) attach(group, name string, slot int32) error {
	insns, err := program(c.pid, slot, c.counts)
	if err != nil {
		return fmt.Errorf("kcount: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "kcount_" + name,
		Type:         ebpf.TracePoint,
		Instructions: insns,
		License:      "GPL",
	})
	if err != nil {
		return unavailable("load "+name, err)
	}
	c.progs = append(c.progs, prog)
	l, err := link.Tracepoint(group, name, prog, nil)
	if err != nil {
		return unavailable("attach "+group+":"+name, err)
	}
	c.links = append(c.links, l)
	return nil
}

// program increments counts[slot] on this CPU when the current task belongs
// to thread group pid. In sched_switch the current task is the one being
// switched out, so that counts the process's switches away from the CPU.
func program(pid int, slot int32, counts *ebpf.Map) (asm.Instructions, error) {
	insns := asm.Instructions{
		asm.FnGetCurrentPidTgid.Call(),
		asm.RSh.Imm(asm.R0, 32), // tgid
		asm.JNE.Imm(asm.R0, int32(pid), "out"),
		asm.StoreImm(asm.RFP, -4, int64(slot), asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, 0),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		// Per-CPU, but a tracepoint program can be interrupted by another
		// on the same CPU: the add is atomic all the same.
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
	if err := insns[6].AssociateMap(counts); err != nil {
		return nil, err
	}
	return insns, nil
}

// Read returns the counts so far.
func (c *Counter) Read() (Counts, error) {
	var n Counts
	vals := make([]uint64, c.cpus)
	for slot, dst := range []*uint64{&n.Syscalls, &n.Switches} {
		if err := c.counts.Lookup(uint32(slot), &vals); err != nil {
			return Counts{}, fmt.Errorf("kcount: read: %w", err)
		}
		for _, v := range vals {
			*dst += v
		}
	}
	return n, nil
}

// Pid is the process being counted.
func (c *Counter) Pid() int { return c.pid }

// Close detaches the programs and frees the map.
func (c *Counter) Close() error {
	var errs []error
	for _, l := range c.links {
		errs = append(errs, l.Close())
	}
	for _, p := range c.progs {
		errs = append(errs, p.Close())
	}
	errs = append(errs, c.counts.Close())
	c.links, c.progs = nil, nil
	return errors.Join(errs...)
}

func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}

const tracefsDir = "/sys/kernel/tracing"

// ensureTracefs mounts tracefs where the tracepoint attach looks for event
// ids, unless it (or debugfs's copy) is already there.
func ensureTracefs() error {
	for _, d := range []string{tracefsDir, "/sys/kernel/debug/tracing"} {
		if _, err := os.Stat(d + "/events"); err == nil {
			return nil
		}
	}
	if err := unix.Mount("nodev", tracefsDir, "tracefs", 0, ""); err != nil {
		return unavailable("mount tracefs on "+tracefsDir, err)
	}
	return nil
}
