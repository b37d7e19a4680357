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
// One limit comes from virtio-serial itself: the guest learns only whether
// a host is connected, not how many times it changed. A host that
// disconnects and a new one that connects before agentd has seen the
// hang-up (a close and an open that reach the guest together) look like
// one unbroken connection: the old sessions live on and the new host gets
// no core.ready. A relay restarted that fast waits its ready timeout and
// exits; the next attempt, after that pause, is served. A host transport
// that reconnects when no core.ready comes within a second or so would
// recover sooner.
//
// As PID 1 it inherits every orphan: one SIGCHLD reaper (agent.InitReaper)
// reaps them all and hands the agent's own commands' statuses to their
// sessions.
//
// The kernel command line may set agentd.port=NAME (default
// "agent") and agentd.log=debug.
package main
