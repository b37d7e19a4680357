// Package kcount counts one process's system calls and context switches in
// the kernel, with two eBPF tracepoint programs (raw_syscalls:sys_enter and
// sched:sched_switch) assembled with cilium/ebpf's asm package, so that the
// benchmarks can report syscalls and switches per frame of a relay running
// as a separate process without tracing it from user space.
//
// Counting needs root (CAP_BPF and CAP_PERFMON) and tracefs; Attach mounts
// tracefs at /sys/kernel/tracing if nothing is mounted there, and otherwise
// fails with an error wrapping ErrUnavailable, which callers treat as "skip".
package kcount
