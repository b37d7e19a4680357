//go:build !linux

package main

// The relay is built on epoll, ptys, SO_PEERCRED and vsock: it builds for
// Linux only. Without this file a build for another GOOS fails deep in a
// dependency (undefined: unix.EpollEvent); with it, the compiler names the
// reason.
var _ = relay_builds_for_linux_only__set_GOOS_linux
