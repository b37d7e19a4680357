// Package agent is the guest agent: it runs the protocol's exec and
// file-system requests (stdin with EOF, signals, terminal resize, a tty
// through a pseudo-terminal, env, cwd, user, rlimits; stat, list, read,
// write, mkdir, remove, copy, rename) for one host connection at a time.
//
// Two programs serve it: cmd/agentd, a microVM's init, on a virtio-serial
// port; and the relay's builtin guest, in-process on a ring.Console, where
// the commands are host processes and nothing is isolated (see Warning).
// The byte stream is a Conn; Serve speaks the protocol over it and kills
// the connection's sessions when it ends. A Reaper collects exit statuses:
// HostReaper waits per pid, InitReaper reaps every child as PID 1 must.
package agent
