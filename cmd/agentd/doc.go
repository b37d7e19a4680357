// Command agentd is the guest agent as a microVM's init: a static binary
// that runs as /init (PID 1) of an initramfs and serves package agent's
// protocol to the host over a virtio-serial port.
//
// At boot it mounts devtmpfs, proc, sysfs, devpts and a tmpfs /tmp, loads
// the kernel modules the initramfs carries (/lib/modules/*.ko: the virtio
// transport and virtio_console), and finds its port by name in
// /sys/class/virtio-ports (there is no udev to make
// /dev/virtio-ports/NAME). Then it serves one host connection after
// another: each gets a fresh core.ready; when the host hangs up, that
// connection's sessions are killed and what they still owed it is dropped.
// core.shutdown syncs the file systems and powers the VM off.
//
// As PID 1 it inherits every orphan: one SIGCHLD reaper (agent.InitReaper)
// reaps them all and hands the agent's own commands' statuses to their
// sessions.
//
// The kernel command line may set agentd.port=NAME (default
// "agent") and agentd.log=debug.
package main
